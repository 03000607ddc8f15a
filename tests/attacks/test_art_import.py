"""Importing ART (it runs logging.config.dictConfig) must leave the caller's logging as it was."""
import subprocess
import sys
import textwrap


def test_importing_art_keeps_handlers_open_and_loggers_enabled():
    script = textwrap.dedent("""
        import logging

        class Probe(logging.Handler):  # records what happens to it
            def __init__(self):
                super().__init__()
                self.closed, self.seen = 0, []
            def close(self):
                self.closed += 1
                super().close()
            def emit(self, record):
                self.seen.append(record.getMessage())

        probe = Probe()
        mine = logging.getLogger("advkeras.user")
        mine.addHandler(probe)
        mine.setLevel(logging.INFO)
        from advkeras.attacks.art_backend import import_art
        import_art()
        mine.info("after ART")
        print(probe.closed, mine.disabled, probe.seen)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 False ['after ART']"
