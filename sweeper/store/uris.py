"""Store locations as text: local paths, `file://`, and object-store URIs (`s3://bucket/prefix?query`).

Pure functions of strings and the environment, imported by the local store, the object store
and the lease alike (so none of them imports another to read a URI).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def is_uri(location: str | Path) -> bool:
    """Whether `storage:` / `report:` names an object store rather than a local path (`file://` is local)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def local_path_of(location: str) -> str:
    """`file:///x` -> `/x`; anything else unchanged."""
    return urlsplit(location).path if location.startswith("file://") else location


def join_uri(uri: str, *names: str) -> str:
    """`s3://b/p?q` + `name` -> `s3://b/p/name?q` (the query stays at the end)."""
    parts = urlsplit(uri)
    path = "/".join([parts.path.rstrip("/"), *names])
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def display_uri(uri: str) -> str:
    """The URI without a `KEY:SECRET@` user part and without its query, for messages and reports."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def credentials_problem(uri: str) -> str | None:
    """Why a `storage:` / `report:` URI may not carry credentials (`s3://KEY:SECRET@bucket/...`,
    which pyarrow would take), or None. In the URI they would be written into the store's
    study.yaml, the report, Ray's logs and every message naming the store; the secret is not echoed."""
    if "@" not in urlsplit(uri).netloc:
        return None
    return (f"{display_uri(uri)}: the URI carries credentials (the part before '@'); give them as AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or a profile or instance role) on the driver and every node, so they are not written "
            "into the store, the report and the logs")


def s3_endpoint(uri: str) -> tuple[str | None, str]:
    """(`endpoint_url` as boto3 takes it, or None for AWS itself; the query, completed from the
    environment) of an s3:// URI."""
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    env_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if "endpoint_override" not in query and env_endpoint:
        endpoint = urlsplit(env_endpoint if "://" in env_endpoint else f"https://{env_endpoint}")
        query["endpoint_override"] = endpoint.netloc
        query.setdefault("scheme", endpoint.scheme or "https")
    if "endpoint_override" in query and "region" not in query:
        # with an endpoint, never ask AWS where the bucket lives (from_uri would, without a region)
        query["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    url = None
    if "endpoint_override" in query:
        endpoint = query["endpoint_override"]
        url = endpoint if "://" in endpoint else f"{query.get('scheme', 'https')}://{endpoint}"
    return url, urlencode(query)


def first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


def store_problem(uri: str, exc: BaseException) -> str:
    """One line saying why the object store at `uri` refused an operation."""
    text = str(exc)
    where = display_uri(uri)
    bucket = urlsplit(uri).netloc
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower() or "Bucket '" in text and "not found" in text.lower():
        return f"the bucket {bucket!r} of {where} does not exist; create it first"
    if "Unable to locate credentials" in text or "No credentials" in text:
        return (f"no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile or instance role) "
                "on the driver and every node")
    if "credentials" in text.lower() or "AccessDenied" in text or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
        return (f"the object store refused the credentials for {where} ({first_line(exc)}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or a profile or instance role) on the driver and every node")
    if any(s in text for s in ("Connection refused", "Couldn't connect", "Could not connect", "connect to server", "Failed to connect",
                               "NETWORK_CONNECTION", "timed out", "Could not resolve", "EndpointConnectionError")):
        endpoint, _ = s3_endpoint(uri) if urlsplit(uri).scheme == "s3" else (None, "")
        return f"cannot reach the object store of {where}{f' at {endpoint}' if endpoint else ''}: {first_line(exc)}"
    return f"cannot use the object store {where}: {first_line(exc)}"
