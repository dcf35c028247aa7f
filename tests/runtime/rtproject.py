"""Throwaway actions and a small manifest for the runtime tests (no real measures needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

ACTIONS: dict[str, str] = {
    "echo": """
        import os, sys
        print("module level ran")
        COUNT = {"n": 0}
        def main(args):
            COUNT["n"] += 1
            print("echo got", sorted(args))
            print("to stderr", file=sys.stderr)
            env = {k: v for k, v in os.environ.items()}
            return {"args": args, "env": env, "calls": COUNT["n"], "pid": os.getpid()}
    """,
    "no_newline": """
        import sys
        def main(args):
            sys.stdout.write("partial line")
            return {"ok": True}
    """,
    "not_dict": """
        def main(args):
            return 42
    """,
    "boom": """
        def main(args):
            raise ValueError("boom: " + str(args.get("why", "no reason")))
    """,
    "sleeper": """
        import time
        def main(args):
            print("going to sleep")
            time.sleep(float(args.get("seconds", 5)))
            return {"slept": args.get("seconds", 5)}
    """,
    "hog": """
        import numpy as np, scipy.ndimage
        def main(args):
            block = np.ones(int(args["mb"]) * 1024 * 1024 // 8)
            return {"allocated_mb": int(block.nbytes // (1024 * 1024))}
    """,
    "printer": """
        def main(args):
            line = "x" * 999
            for _ in range(int(args.get("lines", 20000))):
                print(line)
            return {"printed": True}
    """,
    "big_result": """
        def main(args):
            return {"blob": "y" * int(args.get("bytes", 5 * 1024 * 1024))}
    """,
    "crash": """
        import os, signal
        def main(args):
            if args.get("signal"):
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)
    """,
    "add_one": """
        def main(args):
            return {"n": int(args.get("n", 0)) + 1, "secret": args.get("secret")}
    """,
    "which_qmroct": """
        import qmroct
        def main(args):
            return {"file": qmroct.__file__}
    """,
}

MANIFEST = """
project:
  name: runtime-test
  packages:
    rt:
      version: 0.0.1
      inputs: {pkg_param: from-package}
      actions:
        echo:
          function: functions/echo
          runtime: python:3.11
          limits: {timeout: 10000, memorySize: 128, logSize: 1}
          inputs: {bound: $RT_BOUND, other: plain}
        keyed:
          function: functions/echo
          limits: {timeout: 10000, memorySize: 128, logSize: 1}
          annotations: {provide-api-key: true}
        no_newline: {function: functions/no_newline, limits: {timeout: 10000, memorySize: 128}}
        not_dict: {function: functions/not_dict, limits: {timeout: 10000, memorySize: 128}}
        boom: {function: functions/boom, limits: {timeout: 10000, memorySize: 128}}
        sleeper: {function: functions/sleeper, limits: {timeout: 1000, memorySize: 128}}
        hog: {function: functions/hog, limits: {timeout: 60000, memorySize: 512}}
        printer: {function: functions/printer, limits: {timeout: 60000, memorySize: 128, logSize: 1}}
        big_result: {function: functions/big_result, limits: {timeout: 10000, memorySize: 128}}
        crash: {function: functions/crash, limits: {timeout: 10000, memorySize: 128}}
        add_one: {function: functions/add_one, limits: {timeout: 10000, memorySize: 128}}
        guarded:
          function: functions/add_one
          limits: {timeout: 10000, memorySize: 128}
          inputs: {secret: bound-secret}
          annotations: {final: true}
        which_qmroct: {function: functions/which_qmroct, limits: {timeout: 10000, memorySize: 128}}
      sequences:
        plus_two: {actions: "add_one, add_one"}
        plus_guarded: {actions: "add_one, guarded"}
        broken_chain: {actions: "add_one, boom, add_one"}
      triggers:
        poke: {inputs: {from_trigger: t}}
        lonely: {}
        tick: {feed: /whisk.system/alarms/alarm, inputs: {cron: "* * * * *"}}
      rules:
        poke-echo: {trigger: poke, action: echo}
        poke-add: {trigger: poke, action: add_one}
        on-tick: {trigger: tick, action: add_one}
"""


def write_project(root: Path) -> Path:
    """Action folders and the manifest under ``root``; returns the manifest path."""
    for name, source in ACTIONS.items():
        folder = root / "functions" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__main__.py").write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    manifest = root / "manifest.yaml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    return manifest
