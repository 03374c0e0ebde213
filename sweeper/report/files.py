"""The names of a report's own files: light, so a caller can find a report without building one."""

INDEX_NAME = "index.html"
ANSWER_NAME = "summary.txt"  # warnings, verdict and headline as plain text, for the terminal and scripts
