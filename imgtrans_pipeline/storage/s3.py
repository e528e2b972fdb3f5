"""Artifact store on any S3-API service: AWS S3, Cloudflare R2, MinIO (``endpoint_url``), moto in tests.

Keys are ``{prefix}/{request_id}/{name}``. The boto3 client is created once per store and shared between threads
(boto3 clients are thread-safe; sessions are not, so the session is used only here in ``__init__``). Every
botocore failure is translated into ``StorageError`` with ``transient`` set, so the orchestrator can tell
"fix your configuration" (missing bucket, denied, bad credentials) from "try again" (connection refused, 5xx).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import boto3
import botocore.exceptions as bce
from botocore.config import Config

from imgtrans_pipeline.core.errors import StorageError
from imgtrans_pipeline.storage.base import (
    ArtifactNotFound,
    guess_content_type,
    validate_name,
    validate_request_id,
)

logger = logging.getLogger(__name__)

# Error codes that mean the configuration is wrong: retrying the same call cannot succeed.
_PERMANENT_CODES = {
    "NoSuchBucket": "bucket '{bucket}' does not exist",
    "AccessDenied": "access denied to bucket '{bucket}' (check credentials and bucket policy)",
    "AllAccessDisabled": "all access to bucket '{bucket}' is disabled",
    "InvalidAccessKeyId": "the access key id is not known to the S3 endpoint (check credentials)",
    "SignatureDoesNotMatch": "request signature rejected (check the secret key and region)",
    "InvalidBucketName": "invalid bucket name '{bucket}'",
    "AuthorizationHeaderMalformed": "authorization header rejected (check the region)",
    "PermanentRedirect": "bucket '{bucket}' lives in another region or endpoint (check region / endpoint_url)",
    "InvalidRequest": "the S3 endpoint rejected the request as invalid",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is invalid",
}
# Codes that say "not now": throttling and server-side trouble.
_TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
    "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequests", "OperationAborted",
}


class S3ArtifactStore:
    """Artifacts as S3 objects under ``s3://{bucket}/{prefix}/{request_id}/{name}``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        create_bucket: bool = False,
        public_base_url: str | None = None,
        presign_expires: int = 3600,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_pool_connections: int = 20,
        addressing_style: str | None = None,
        list_page_size: int = 1000,
        cache_control: str | None = None,
    ) -> None:
        """Credentials come from the arguments when given, else boto3's default chain (AWS_* env, profile, role).

        ``endpoint_url`` selects an S3-compatible service (R2: ``https://<account>.r2.cloudflarestorage.com``,
        region ``auto``; MinIO: ``http://host:9000``); with one set, path-style addressing is the default because
        it works everywhere without wildcard DNS. ``public_base_url`` is the public address of the bucket
        (an R2 public bucket / custom domain / CDN) and makes ``public_url`` return ``{public_base_url}/{key}``
        instead of a presigned GET URL valid for ``presign_expires`` seconds. ``max_attempts`` counts the first
        try (botocore "standard" retry mode: exponential backoff on throttling, 5xx and connection errors).
        """
        if not bucket or "/" in bucket:
            raise StorageError(f"invalid bucket name {bucket!r}", transient=False)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.presign_expires = int(presign_expires)
        self.list_page_size = int(list_page_size)
        self.cache_control = cache_control
        if region is None and self.endpoint_url and ".r2.cloudflarestorage.com" in self.endpoint_url:
            region = "auto"  # R2 accepts only "auto" (or us-east-1) as the signing region
        if addressing_style is None:
            addressing_style = "path" if self.endpoint_url else "auto"
        config = Config(
            retries={"mode": "standard", "total_max_attempts": max(1, int(max_attempts))},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            # S3-compatible services (R2, older MinIO) reject or mishandle the CRC checksums newer botocore adds
            # to every upload by default; send/verify them only when the operation requires it.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            session = boto3.session.Session(
                aws_access_key_id=access_key_id or None,
                aws_secret_access_key=secret_access_key or None,
                aws_session_token=session_token or None,
                region_name=region or None,
                profile_name=profile or None,
            )
            self.client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except (bce.BotoCoreError, ValueError) as exc:
            raise StorageError(f"could not configure S3 client: {exc}", transient=False) from exc
        if create_bucket:
            self.ensure_bucket()

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3ArtifactStore(s3://{self.bucket}/{self.prefix}{where})"

    # -- keys ---------------------------------------------------------------------------------------------------
    def _request_prefix(self, request_id: str) -> str:
        rid = validate_request_id(request_id)
        return f"{self.prefix}/{rid}/" if self.prefix else f"{rid}/"

    def key(self, request_id: str, name: str) -> str:
        """Object key of an artifact (validated: cannot leave the request's prefix)."""
        return self._request_prefix(request_id) + validate_name(name)

    # -- errors -------------------------------------------------------------------------------------------------
    def _error(self, action: str, target: str, exc: Exception) -> StorageError:
        """Translate a botocore exception into a StorageError that says what to do about it."""
        where = f"s3://{self.bucket}/{target}"
        if isinstance(exc, bce.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = err.get("Message") or ""
            if code in _PERMANENT_CODES:
                reason = _PERMANENT_CODES[code].format(bucket=self.bucket)
                return StorageError(f"could not {action} {where}: {reason} [{code}]", transient=False)
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                return StorageError(
                    f"could not {action} {where}: S3 endpoint answered {status or ''} {code} {message}".rstrip(),
                    transient=True,
                )
            if status == 403:
                reason = f"access denied to bucket '{self.bucket}' (check credentials and bucket policy)"
                return StorageError(f"could not {action} {where}: {reason}", transient=False)
            if status == 404 and code in {"404", "NotFound"}:
                # HEAD has no body, so a missing bucket and a missing key look alike; say so.
                return StorageError(f"could not {action} {where}: not found (bucket or key missing)", transient=False)
            return StorageError(f"could not {action} {where}: {code or status} {message}".rstrip(), transient=False)
        if isinstance(exc, bce.SSLError):
            return StorageError(f"could not {action} {where}: TLS error talking to S3 endpoint: {exc}", transient=False)
        if isinstance(exc, bce.ConnectionError | bce.HTTPClientError | bce.IncompleteReadError):
            endpoint = self.endpoint_url or "AWS S3"
            return StorageError(f"could not {action} {where}: cannot reach {endpoint}: {exc}", transient=True)
        if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
            return StorageError(
                f"could not {action} {where}: no S3 credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a "
                "profile, or pass access_key_id/secret_access_key)",
                transient=False,
            )
        return StorageError(f"could not {action} {where}: {type(exc).__name__}: {exc}", transient=False)

    @staticmethod
    def _status(exc: bce.ClientError) -> int:
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)

    # -- bucket -------------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise ``StorageError`` unless the bucket exists and is reachable (a start-up health check)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except bce.ClientError as exc:
            if self._status(exc) == 404:
                raise StorageError(f"bucket '{self.bucket}' does not exist", transient=False) from exc
            raise self._error("check bucket", "", exc) from exc
        except bce.BotoCoreError as exc:
            raise self._error("check bucket", "", exc) from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (for MinIO/dev set-ups; production buckets are provisioned)."""
        try:
            self.check()
            return
        except StorageError as exc:
            if exc.transient or "does not exist" not in exc.reason:
                raise
        params: dict[str, Any] = {"Bucket": self.bucket}
        region = self.client.meta.region_name
        if region and region not in {"us-east-1", "auto"}:
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**params)
            logger.info("created bucket %s", self.bucket)
        except bce.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise self._error("create bucket", "", exc) from exc
        except bce.BotoCoreError as exc:
            raise self._error("create bucket", "", exc) from exc

    # -- artifacts ----------------------------------------------------------------------------------------------
    def put(self, request_id: str, name: str, data: bytes, content_type: str | None = None) -> str:
        """Upload ``data`` with its content type (so a published result renders in a browser); return s3:// URI."""
        key = self.key(request_id, name)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"artifact data must be bytes, not {type(data).__name__}")
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": bytes(data),
            "ContentType": content_type or guess_content_type(name),
        }
        if self.cache_control:
            params["CacheControl"] = self.cache_control
        try:
            self.client.put_object(**params)
        except (bce.ClientError, bce.BotoCoreError) as exc:
            raise self._error("write", key, exc) from exc
        logger.debug("stored s3://%s/%s (%d bytes)", self.bucket, key, len(data))
        return f"s3://{self.bucket}/{key}"

    def get(self, request_id: str, name: str) -> bytes:
        key = self.key(request_id, name)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            with response["Body"] as body:
                return body.read()
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                raise ArtifactNotFound(request_id, name, f"s3://{self.bucket}") from exc
            raise self._error("read", key, exc) from exc
        except bce.BotoCoreError as exc:
            raise self._error("read", key, exc) from exc

    def exists(self, request_id: str, name: str) -> bool:
        """HEAD the object. A missing bucket also answers 404 to HEAD, so it reads as "does not exist" here."""
        key = self.key(request_id, name)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except bce.ClientError as exc:
            if self._status(exc) == 404:
                return False
            raise self._error("check", key, exc) from exc
        except bce.BotoCoreError as exc:
            raise self._error("check", key, exc) from exc

    def head(self, request_id: str, name: str) -> dict[str, Any]:
        """Stored metadata of an artifact: ``content_type``, ``size``, ``etag``, ``last_modified``."""
        key = self.key(request_id, name)
        try:
            meta = self.client.head_object(Bucket=self.bucket, Key=key)
        except bce.ClientError as exc:
            if self._status(exc) == 404:
                raise ArtifactNotFound(request_id, name, f"s3://{self.bucket}") from exc
            raise self._error("check", key, exc) from exc
        except bce.BotoCoreError as exc:
            raise self._error("check", key, exc) from exc
        return {
            "content_type": meta.get("ContentType"),
            "size": meta.get("ContentLength"),
            "etag": meta.get("ETag"),
            "last_modified": meta.get("LastModified"),
        }

    def uri(self, request_id: str, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(request_id, name)}"

    def public_url(self, request_id: str, name: str, expires_in: int | None = None) -> str:
        """``{public_base_url}/{key}`` when the bucket is public (R2 public bucket / CDN), else a presigned GET."""
        key = self.key(request_id, name)
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(key)}"
        try:
            return str(
                self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": key},
                    ExpiresIn=int(expires_in or self.presign_expires),
                )
            )
        except bce.BotoCoreError as exc:  # no network call; fails only on missing credentials / bad config
            raise self._error("presign", key, exc) from exc

    def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.list_page_size}
            )
            for page in pages:
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        except (bce.ClientError, bce.BotoCoreError) as exc:
            raise self._error("list", prefix, exc) from exc
        return keys

    def list_requests(self, starting_with: str = "") -> list[str]:
        """Request folders (common prefixes) under the store's prefix, optionally only those starting so."""
        base = f"{self.prefix}/" if self.prefix else ""
        folders: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            pages = paginator.paginate(Bucket=self.bucket, Prefix=base + starting_with, Delimiter="/",
                                       PaginationConfig={"PageSize": self.list_page_size})
            for page in pages:
                folders.extend(p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", []))
        except (bce.ClientError, bce.BotoCoreError) as exc:
            raise self._error("list", base + starting_with, exc) from exc
        return sorted(folders)

    def list(self, request_id: str) -> list[str]:
        prefix = self._request_prefix(request_id)
        return sorted(k[len(prefix):] for k in self._keys(prefix) if "/" not in k[len(prefix):])

    def delete(self, request_id: str) -> int:
        prefix = self._request_prefix(request_id)
        keys = self._keys(prefix)
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = keys[start:start + 1000]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except (bce.ClientError, bce.BotoCoreError) as exc:
                raise self._error("delete", prefix, exc) from exc
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"could not delete {len(errors)} object(s) under s3://{self.bucket}/{prefix}: "
                    f"{first.get('Code')} {first.get('Message', '')}".rstrip(),
                    transient=first.get("Code") in _TRANSIENT_CODES,
                )
        return len(keys)
