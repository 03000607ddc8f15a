"""iNNvestigate analyzers (guided backprop, deconvnet, ...) in a spawned worker process.

iNNvestigate 2 needs eager execution off, foolbox and the rest of advkeras need it on, and it cannot
be switched back in a process. So the analysis runs in a child process started with the 'spawn'
method (a fresh interpreter, no forked TensorFlow state) that disables eager execution before
importing iNNvestigate, loads the model from an HDF5 file (Keras 2.14 loads `.keras` files with
wrong weights in graph mode, so the parent converts), flattens its nested `cnn`/`dnn` parts into
plain layers, and answers requests with numpy arrays. One worker serves any number of calls.

Note: iNNvestigate starts the backward pass from the top logit's value, not from 1 as a gradient
does, so its maps equal the native `guided_backprop` maps times each image's top logit.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ANALYZERS = ("guided_backprop", "deconvnet", "gradient")


class WorkerError(RuntimeError):
    """The iNNvestigate worker failed; the message carries the worker's error and traceback."""


def _serve(conn: Any, model_path: str, batch_size: int) -> None:
    """The worker's main loop (runs in the child process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    try:
        import tensorflow as tf

        tf.compat.v1.disable_eager_execution()  # before any graph is built or iNNvestigate imported
        tf.get_logger().setLevel("ERROR")
        import innvestigate

        import advkeras.models.layers  # noqa: F401  (custom layers, before deserializing)
        from advkeras.explain.flat_model import flat_model

        model = flat_model(tf.keras.models.load_model(model_path, compile=False))
        analyzers: dict[str, Any] = {}
        conn.send(("ready", model.input_shape[1:]))
    except BaseException as exc:  # noqa: BLE001  (everything goes back to the parent)
        conn.send(("error", _describe(exc)))
        return
    while True:
        try:
            request = conn.recv()
        except EOFError:  # parent gone
            return
        if request[0] == "close":
            return
        try:
            _, method, x = request
            if method not in analyzers:
                analyzers[method] = innvestigate.create_analyzer(method, model)
            out = [analyzers[method].analyze(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
            conn.send(("ok", np.concatenate(out).astype(np.float32) if out else np.zeros_like(x)))
        except BaseException as exc:  # noqa: BLE001
            conn.send(("error", _describe(exc)))


def _describe(exc: BaseException) -> tuple[str, str, str, str]:
    return (type(exc).__module__, type(exc).__name__, str(exc), traceback.format_exc())


def _reraise(info: tuple[str, str, str, str]) -> None:
    module, name, message, tb = info
    from advkeras import errors

    cls = getattr(errors, name, None) if module == errors.__name__ else None
    if cls is not None:
        raise cls(message)
    raise WorkerError(f"iNNvestigate worker raised {name}: {message}\n--- worker traceback ---\n{tb}")


class InnvestigateWorker:
    """A child process running iNNvestigate analyzers on one model; use as a context manager.

    `model` is a Keras model (saved to a temporary HDF5 file) or the path of a `.keras`/`.h5` file.
    ``worker.analyze(x, "guided_backprop")`` returns a numpy array shaped like `x`.
    """

    def __init__(self, model: Any, *, batch_size: int = 64, start_timeout: float = 300.0,
                 call_timeout: float = 600.0):
        self.batch_size = batch_size
        self.call_timeout = call_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="advkeras-innvestigate-")
        model_path, self.input_shape = self._to_h5(model, Path(self._tmp.name) / "model.h5")
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, str(model_path), batch_size), daemon=True,
                                 name="advkeras-innvestigate")
        self._proc.start()
        child.close()
        try:
            status, payload = self._receive(start_timeout, "start")
        except BaseException:
            self.close()
            raise
        if status == "error":
            self.close()
            _reraise(payload)

    @staticmethod
    def _to_h5(model: Any, target: Path) -> tuple[Path, tuple[int, ...]]:
        from advkeras.models import check_logits, load_model

        if isinstance(model, (str, Path)):
            path = Path(model)
            if path.suffix == ".h5" and path.is_file():
                # Shape is read in the worker; do not load TensorFlow weights twice here.
                return path, None
            model = load_model(path)
        check_logits(model)
        with warnings.catch_warnings():  # Keras calls HDF5 'legacy'; it is the format graph mode loads right
            warnings.simplefilter("ignore")
            model.save(target, save_format="h5")
        return target, tuple(model.input_shape[1:])

    def _receive(self, timeout: float, what: str) -> tuple[str, Any]:
        if not self._conn.poll(timeout):
            raise WorkerError(f"the iNNvestigate worker did not answer the {what} request within {timeout:.0f} s; "
                              "pass a larger timeout or fewer images per call.")
        try:
            status, payload = self._conn.recv()
        except EOFError:
            code = self._proc.exitcode if self._proc is not None else None
            raise WorkerError(f"the iNNvestigate worker died during {what} (exit code {code}). It is started "
                              "with 'spawn': a script that creates one must do so under "
                              "`if __name__ == '__main__':`; otherwise it may have run out of memory.") from None
        if status == "ready":
            self.input_shape = tuple(payload)
        return status, payload

    def analyze(self, x: np.ndarray, method: str = "guided_backprop") -> np.ndarray:
        """The analyzer `method`'s maps of images `x` (max-activation neuron), same shape as `x`."""
        from advkeras.errors import InputError
        from advkeras.models.checks import check_images

        if method not in ANALYZERS:
            raise InputError(f"unknown analyzer {method!r}; the worker runs: {', '.join(ANALYZERS)}.")
        if self._proc is None:
            raise WorkerError("this iNNvestigate worker is closed; create a new InnvestigateWorker.")
        x = check_images(x)
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise InputError(f"x has images of shape {x.shape[1:]} but the model expects {self.input_shape}.")
        self._conn.send(("analyze", method, x))
        status, payload = self._receive(self.call_timeout, "analyze")
        if status == "error":
            _reraise(payload)
        return payload

    @property
    def pid(self) -> int | None:
        """The worker's process id (None once closed)."""
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Stop the worker and delete its temporary model file."""
        if self._proc is not None:
            try:
                self._conn.send(("close",))
            except (BrokenPipeError, OSError):
                pass
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout=5)
            self._conn.close()
            self._proc = None
        self._tmp.cleanup()

    def __enter__(self) -> "InnvestigateWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass
