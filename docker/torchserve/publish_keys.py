"""Copies TorchServe's key_file.json into a Kubernetes Secret, so services in other pods can
read the tokens (token authorization stays on; TorchServe makes new keys at every start).

Runs as a sidecar next to TorchServe (Helm chart, `torchserve.enabled`), sharing its working
directory. Standard library only, with the pod's service-account token; the chart's Role
lets it get/patch/create that one Secret. Services mount the Secret as a volume and read the
key file on every call (`TorchServeSettings.key_file`), so rotated keys reach them without
a restart.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("publish_keys")

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
KEY_FILE_ENTRY = "key_file.json"

Send = Callable[[str, str, dict[str, Any] | None, str], int]
"""send(method, path, body, content_type) -> HTTP status (404 is returned, not raised)."""


def secret_manifest(name: str, namespace: str, key_file: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "hone-torchserve-key-publisher"},
        },
        "type": "Opaque",
        "data": {KEY_FILE_ENTRY: base64.b64encode(key_file).decode()},
    }


def publish(send: Send, name: str, namespace: str, key_file: bytes) -> None:
    """Patch the Secret with the current key file, creating it if it does not exist."""
    manifest = secret_manifest(name, namespace, key_file)
    path = f"/api/v1/namespaces/{namespace}/secrets"
    status = send("PATCH", f"{path}/{name}", manifest, "application/merge-patch+json")
    if status == 404:
        status = send("POST", path, manifest, "application/json")
    if status >= 300:
        raise RuntimeError(f"the Kubernetes API answered {status} for secret {namespace}/{name}")


def in_cluster_send() -> Send:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))

    def send(method: str, path: str, body: dict[str, Any] | None, content_type: str) -> int:
        # Read on every call: the kubelet rotates the projected token.
        token = (SERVICE_ACCOUNT / "token").read_text().strip()
        request = urllib.request.Request(
            f"https://{host}:{port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    return send


def watch(
    send: Send,
    name: str,
    namespace: str,
    key_file: Path,
    *,
    interval: float = 5.0,
    rounds: int | None = None,
) -> None:
    """Publish the key file whenever its content changes; `rounds` bounds the loop in tests."""
    published: bytes | None = None
    done = 0
    while rounds is None or done < rounds:
        done += 1
        try:
            content = key_file.read_bytes() if key_file.exists() else None
            if content and content != published:
                publish(send, name, namespace, content)
                published = content
                log.info("published %s to secret %s/%s", key_file, namespace, name)
        except (OSError, RuntimeError) as error:
            # Keep going: the API server or the file may be back at the next round.
            log.warning("could not publish the key file: %s", error)
        if rounds is None or done < rounds:
            time.sleep(interval)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    namespace = os.environ.get("HONE_KEYS_NAMESPACE") or (
        (SERVICE_ACCOUNT / "namespace").read_text().strip()
    )
    watch(
        in_cluster_send(),
        os.environ["HONE_KEYS_SECRET"],
        namespace,
        Path(os.environ.get("HONE_KEYS_FILE", "/home/model-server/run/key_file.json")),
        interval=float(os.environ.get("HONE_KEYS_INTERVAL_SECONDS", "5")),
    )


if __name__ == "__main__":
    main()
