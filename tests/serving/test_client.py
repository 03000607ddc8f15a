"""The REST client against a local server that speaks TF Serving's predict protocol, backed by a real
exported SavedModel (TF Serving itself cannot be installed on these machines)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tensorflow as tf

from advkeras.defenses.prediction_similarity import build_defended_model
from advkeras.errors import InputError
from advkeras.models import build_classifier
from advkeras.serving import ServingClient, ServingError, export_saved_model


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that timed out and left is the point of the timeout test


def _handler(signature, delay=0.0):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            import time
            time.sleep(delay)
            if signature is None:  # the slow server of the timeout test
                return self._send(503, {"error": "too slow"})
            if not self.path.startswith("/v1/models/digits") or not self.path.endswith(":predict"):
                return self._send(404, {"error": f"Servable not found for request: {self.path}"})
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if "instances" in body:
                image = [r["image"] for r in body["instances"]]
                ids = [r["user_id"] for r in body["instances"]]
            else:
                image, ids = body["inputs"]["image"], body["inputs"]["user_id"]
            try:
                out = signature(image=tf.constant(image, tf.float32), user_id=tf.constant(ids))
            except tf.errors.InvalidArgumentError as exc:
                return self._send(400, {"error": exc.message})
            # TF Serving sends string outputs (the index store's matched_user) as JSON strings
            out = {k: v.numpy().astype(str).tolist() if v.dtype == tf.string else v.numpy().tolist()
                   for k, v in out.items()}
            if "instances" in body:
                return self._send(200, {"predictions": [{k: out[k][i] for k in out} for i in range(len(ids))]})
            return self._send(200, {"outputs": out})

        def _send(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    clf = build_classifier("lenet", (28, 28, 1), 10, seed=0)
    defended = build_defended_model(clf, threshold=0.05, global_threshold=0.05, min_matches=1)
    path = export_saved_model(defended, tmp_path_factory.mktemp("sm"), "digits")
    sig = tf.saved_model.load(str(path)).signatures["serving_default"]
    httpd = QuietServer(("127.0.0.1", 0), _handler(sig))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", clf
    httpd.shutdown()


def test_row_and_columnar_forms_give_the_model_outputs(server, mnist_splits):
    url, clf = server
    x = mnist_splits[2].x[:3]
    client = ServingClient(url, "digits", timeout=30)
    row = client.predict(x, ["a", "b", "c"], form="row")
    col = client.predict(x, ["d", "e", "f"], form="columnar")
    expected = tf.nn.softmax(clf(x)).numpy()
    np.testing.assert_allclose(row["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(col["probabilities"], expected, atol=1e-5)
    assert row["label"].tolist() == expected.argmax(1).tolist() and not row["alarm"].any()
    again = client.predict(np.clip(x[:1] + 0.01, 0, 1), "a")  # a near-copy (an identical re-send never counts)
    assert again["alarm"].tolist() == [True]  # the server-side history saw user a's image before
    assert again["user_alarm"].tolist() == [True] and again["matched_user"].tolist() == ["d"]  # d sent it too


def test_client_errors_are_clear(server, mnist_splits):
    url, _ = server
    x = mnist_splits[2].x[:1]
    with pytest.raises(ServingError, match="N x 28 x 28 x 1"):
        ServingClient(url, "digits").predict(np.zeros((1, 32, 32, 1), np.float32), "u")
    with pytest.raises(ServingError, match="404"):
        ServingClient(url, "nope").predict(x, "u")
    with pytest.raises(ServingError, match="could not reach"):
        ServingClient("http://127.0.0.1:9", "digits", timeout=2).predict(x, "u")
    with pytest.raises(InputError, match="user ids"):
        ServingClient(url, "digits").predict(np.zeros((2, 28, 28, 1), np.float32), ["only-one"])


def test_timeout_is_reported():
    httpd = QuietServer(("127.0.0.1", 0), _handler(None, delay=2.0))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ServingError, match="within 0.5 s"):
            ServingClient(f"http://127.0.0.1:{httpd.server_address[1]}", "digits", timeout=0.5).predict(
                np.zeros((1, 28, 28, 1), np.float32), "u")
    finally:
        httpd.shutdown()
