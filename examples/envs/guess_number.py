#!/usr/bin/env python3
"""A small external environment for ingrain: guess a secret number.

It speaks ingrain's line-delimited JSON protocol (docs/ENVIRONMENTS.md) on stdin/stdout with
plain python3 and no packages, so it doubles as a template for plugging in a Python benchmark:
replace make_tasks, reset and step, keep the loop.

    python3 examples/envs/guess_number.py [--crash-at-step N --crash-flag FILE]

Each task hides a number in [1, 100], derived from the world seed and the task id. The agent
calls guess(number) and hears "higher", "lower" or "correct" (reward 1, episode over).
--crash-at-step N makes the process exit with status 3 at its N-th step message, once: it
creates FILE and does not crash again while FILE exists (used by the restart test).
"""
import hashlib
import json
import os
import sys

TOOLS = [
    {
        "name": "guess",
        "description": "Guess the secret number; the reply says higher, lower or correct.",
        "arguments": [{"name": "number", "type": "integer", "description": "1 to 100", "required": True}],
    }
]


def secret(seed, task_id):
    digest = hashlib.sha256(f"{seed}:{task_id}".encode()).digest()
    return 1 + int.from_bytes(digest[:4], "little") % 100


class GuessEnv:
    def __init__(self):
        self.seed = 0
        self.tasks = {}
        self.target = None
        self.done = True

    def make_tasks(self, msg):
        self.seed = msg.get("seed", 0)
        train = [f"train-{i}" for i in range(msg.get("train", 8))]
        heldout = [f"heldout-{i}" for i in range(msg.get("heldout", 4))]
        self.tasks = {t: secret(self.seed, t) for t in train + heldout}
        return {"train": train, "heldout": heldout, "tools": TOOLS}

    def reset(self, msg):
        task = msg.get("task")
        if task not in self.tasks:
            return {"error": f"unknown task {task!r}"}
        self.target = self.tasks[task]
        self.done = False
        return {"observation": "Guess my number between 1 and 100.", "info": {"task": task}}

    def step(self, msg):
        if self.done:
            return {"error": "step after the episode ended"}
        action = msg.get("action", {})
        name, args = action.get("name"), action.get("arguments", {})
        if name != "guess":
            return {"observation": f"Error: unknown tool {name!r}; the tool is guess.", "reward": 0.0,
                    "done": False, "invalid": True}
        number = args.get("number")
        if not isinstance(number, int) or isinstance(number, bool):
            return {"observation": "Error: guess needs an integer 'number'.", "reward": 0.0, "done": False,
                    "invalid": True}
        if number == self.target:
            self.done = True
            return {"observation": "Correct!", "reward": 1.0, "done": True, "info": {"success": True}}
        hint = "higher" if number < self.target else "lower"
        return {"observation": f"{number} is wrong; go {hint}.", "reward": 0.0, "done": False}


def main(argv):
    crash_at, crash_flag = None, None
    if "--crash-at-step" in argv:
        crash_at = int(argv[argv.index("--crash-at-step") + 1])
        crash_flag = argv[argv.index("--crash-flag") + 1]
    env, steps = GuessEnv(), 0
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError as e:
            reply = {"error": f"invalid JSON: {e}"}
        else:
            kind = msg.get("type")
            if kind == "tasks":
                reply = env.make_tasks(msg)
            elif kind == "reset":
                reply = env.reset(msg)
            elif kind == "step":
                steps += 1
                if crash_at is not None and steps == crash_at and not os.path.exists(crash_flag):
                    open(crash_flag, "w").close()
                    print("guess_number: crashing on purpose", file=sys.stderr)
                    sys.exit(3)
                reply = env.step(msg)
            elif kind == "close":
                return 0
            else:
                reply = {"error": f"unknown message type {kind!r}"}
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
