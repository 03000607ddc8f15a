"""A small client for TF Serving's REST predict API (`POST /v1/models/<name>[/versions/<v>]:predict`)."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Sequence

import numpy as np

from advkeras.errors import AdvKerasError, InputError


class ServingError(AdvKerasError):
    """TF Serving could not be reached or refused the request; the message carries the server's reason."""


class ServingClient:
    """Send images + user ids to a TF Serving model and get numpy outputs back.

    `form="row"` sends `{"instances": [{"image": ..., "user_id": ...}, ...]}`; `form="columnar"` sends
    `{"inputs": {"image": [...], "user_id": [...]}}` (smaller for big batches). Both answer the same.
    """

    def __init__(self, url: str = "http://localhost:8501", model: str = "advkeras", *, version: int | None = None,
                 timeout: float = 10.0, signature: str = "serving_default"):
        self.url, self.model, self.version = url.rstrip("/"), model, version
        self.timeout, self.signature = timeout, signature

    @property
    def endpoint(self) -> str:
        v = f"/versions/{self.version}" if self.version is not None else ""
        return f"{self.url}/v1/models/{self.model}{v}:predict"

    def predict(self, images: np.ndarray, user_ids: str | Sequence[str], *, form: str = "row") -> dict[str, np.ndarray]:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise InputError(f"images must be a batch N x H x W x C, got shape {images.shape}.")
        ids = [user_ids] * len(images) if isinstance(user_ids, str) else list(user_ids)
        if len(ids) != len(images):
            raise InputError(f"{len(ids)} user ids for {len(images)} images; give one per image or one string.")
        if form == "row":
            body = {"signature_name": self.signature,
                    "instances": [{"image": img.tolist(), "user_id": uid} for img, uid in zip(images, ids)]}
        elif form == "columnar":
            body = {"signature_name": self.signature, "inputs": {"image": images.tolist(), "user_id": ids}}
        else:
            raise InputError(f"form must be 'row' or 'columnar', got {form!r}.")
        reply = self._post(body)
        if "predictions" in reply:
            rows = reply["predictions"]
            if rows and isinstance(rows[0], dict):
                return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}
            return {"output": np.asarray(rows)}
        outputs = reply.get("outputs")
        if isinstance(outputs, dict):
            return {k: np.asarray(v) for k, v in outputs.items()}
        raise ServingError(f"unexpected reply from {self.endpoint}: keys {sorted(reply)}")

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read()).get("error", "")
            except (ValueError, OSError):
                reason = ""
            raise ServingError(f"TF Serving answered {exc.code} for {self.endpoint}: {reason or exc.reason}") from exc
        except (socket.timeout, TimeoutError) as exc:
            raise ServingError(f"no answer from {self.endpoint} within {self.timeout:g} s; raise timeout= or "
                               "check the server load.") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                raise ServingError(f"no answer from {self.endpoint} within {self.timeout:g} s.") from exc
            raise ServingError(f"could not reach TF Serving at {self.url} ({exc.reason}); is the server running "
                               "(see docs/serving.md)?") from exc
