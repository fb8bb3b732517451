"""What `sam package` does for local paths, into moto's S3: function code and layer content
uploaded as zips, state machine definition files inlined."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

ARTIFACT_BUCKET = "jobrelay-local-artifacts"


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def package(template: dict[str, Any], base_dir: Path, s3: Any, bucket: str) -> dict[str, Path]:
    """Do what `sam package` does for local paths: upload code, inline definitions.

    Mutates `template`; returns logical id -> absolute code directory of each function.
    """
    global_function: dict[str, Any] = template.get("Globals", {}).get("Function", {})
    code_dirs: dict[str, Path] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        kind = resource.get("Type")
        props: dict[str, Any] = resource.setdefault("Properties", {})
        if kind == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            props["Definition"] = _load_document(base_dir / props.pop("DefinitionUri"))
        elif kind == "AWS::Serverless::Function":
            uri = props.get("CodeUri", global_function.get("CodeUri"))
            if isinstance(uri, str) and _is_local_path(uri):
                code_dir = (base_dir / uri).resolve()
                props["CodeUri"] = _upload_directory(s3, bucket, logical_id, code_dir)
                code_dirs[logical_id] = code_dir
        elif kind == "AWS::Serverless::LayerVersion" and _is_local_path(props.get("ContentUri")):
            content_dir = (base_dir / props["ContentUri"]).resolve()
            props["ContentUri"] = _upload_directory(s3, bucket, logical_id, content_dir)
    return code_dirs


def _is_local_path(uri: Any) -> bool:
    return isinstance(uri, str) and not uri.startswith("s3://")


def _load_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _upload_directory(s3: Any, bucket: str, logical_id: str, directory: Path) -> dict[str, str]:
    """Zip a directory (the code itself runs in-process; moto only needs a real object)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{logical_id}: code directory {directory} does not exist")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(directory).as_posix())
    data = buffer.getvalue()
    key = f"{logical_id}/{hashlib.sha256(data).hexdigest()}.zip"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return {"Bucket": bucket, "Key": key}
