"""Keep the driver's cloud credentials out of Ray's files.

Ray Tune (2.60, `ray/tune/execution/class_cache.py`) copies the driver's `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_SECURITY_TOKEN` into every trainable's
`runtime_env.env_vars`, and each node's runtime-env agent logs that runtime env in plain text
(`<temp-dir>/session_*/logs/runtime_env_agent.log`, mode 644) as it creates the trial's worker.
Nothing else in Ray writes them down: an embedded Ray's processes inherit the driver's environment
(so its workers still reach the store), and nodes of an attached cluster use their own credentials
(an instance role, a Secret, the environment `ray start` ran in), as docs/cluster.md says.
"""

from __future__ import annotations

CREDENTIAL_PREFIX = "AWS_"  # every variable Tune copies that holds or names a credential


def keep_credentials_from_ray() -> None:
    """Stop Ray Tune copying the driver's AWS variables into trainables' runtime envs (and so into
    Ray's logs); the other variables Tune copies (its own switches) are kept."""
    from ray.tune.execution import class_cache

    copied = class_cache.ENV_VARS_TO_PROPAGATE
    class_cache.ENV_VARS_TO_PROPAGATE = type(copied)(name for name in copied if not name.startswith(CREDENTIAL_PREFIX))
