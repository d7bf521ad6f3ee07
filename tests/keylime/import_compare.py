#!/usr/bin/env python3
"""Keylime 7.14.3 as the oracle for `assay-verifier policy import-keylime`
(driven by tests/tests/keylime_import.rs; run it in the venv tests/keylime/venv.sh makes).

  import_compare.py judge POLICY.json LOG [PCR10]
  import_compare.py judge-many CASES.json      CASES: [{"policy": P, "log": L, "pcr10": HEX,
                                                        "boot_aggregates": {"sha256": [HEX]}}, ...]
  import_compare.py regex-oracle SEED COUNT    random exclude patterns, each with paths and
                                               whether Keylime excludes them

For each case, with Keylime's own functions only:

1. the policy as Keylime's verifier takes it: `ima.verify_runtime_policy` (JSON,
   exclude list; no signature), `ima.deserialize_runtime_policy` (a DSSE envelope's
   payload), `ima.validate_runtime_policy` (RUNTIME_POLICY_SCHEMA, verification keys);
2. the ascii IMA log (ima-ng lines) judged by `ima.process_measurement_list` with the
   runtime policy, the sha256 PCR bank and, when given, the quoted PCR 10 value and the
   boot aggregates Keylime's verifier takes from a measured-boot log (`boot_aggregates`):
   the whole log once for the verdict, then each entry alone for the paths that fail.

`regex-oracle` makes COUNT random patterns (seeded; the syntax real excludes use: literals,
classes, escapes, groups, scoped flags, quantifiers, anchors, alternation) that Python
compiles, and for each, 40 random short paths and whether Keylime's own exclude check
(`validators.valid_exclude_list([pattern])`, then `.match(path)`) excludes them.

Prints, per case, JSON: {"valid": bool, "error": str or null, "pass": bool,
"failing": [paths of failing entries, in log order], "events": [Keylime event ids],
"replay": PCR 10 as Keylime replays it}. `judge-many` prints a list, in order.
"""

import atexit
import copy
import json
import os
import shutil
import sys
import tempfile

LOGGING_CONF = """[loggers]
keys = root
[handlers]
keys = stderr
[formatters]
keys = plain
[logger_root]
level = CRITICAL
handlers = stderr
[handler_stderr]
class = StreamHandler
level = CRITICAL
formatter = plain
args = (sys.stderr,)
[formatter_plain]
format = %(name)s %(levelname)s %(message)s
"""


def keylime_env():
    """Keylime reads its logging configuration when imported: a quiet one, unless given."""
    if "KEYLIME_LOGGING_CONFIG" not in os.environ:
        d = tempfile.mkdtemp(prefix="assay-keylime-import.")
        atexit.register(shutil.rmtree, d, True)
        path = os.path.join(d, "logging.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(LOGGING_CONF)
        os.environ["KEYLIME_LOGGING_CONFIG"] = path


def judge(policy_path, log_path, pcr10=None, boot_aggregates=None):
    # pylint: disable=import-outside-toplevel
    from keylime.common.algorithms import Hash
    from keylime.ima import ast, ima

    result = {"valid": False, "error": None, "pass": False, "failing": [], "events": [], "replay": None}
    with open(policy_path, "rb") as f:
        policy_bytes = f.read()
    try:
        ima.verify_runtime_policy(policy_bytes, None, verify_sig=False)
        runtime_policy = ima.deserialize_runtime_policy(policy_bytes.decode("utf-8"))
        if runtime_policy is None:
            raise ValueError("empty runtime policy")
        ima.validate_runtime_policy(runtime_policy)
    except Exception as e:  # pylint: disable=broad-except
        result["error"] = f"{type(e).__name__}: {getattr(e, 'message', None) or e}"
        return result
    result["valid"] = True

    with open(log_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    # process_measurement_list adds the boot aggregates to the policy it is given.
    running, failure = ima.process_measurement_list(
        None, lines, copy.deepcopy(runtime_policy), pcrval=pcr10, boot_aggregates=boot_aggregates,
        hash_alg=Hash.SHA256,
    )
    result["replay"] = running
    result["pass"] = not failure
    result["events"] = sorted(set(failure.get_event_ids())) if failure else []

    for line in lines:
        if not line.strip("\n"):
            continue
        _, f = ima.process_measurement_list(
            None, [line], copy.deepcopy(runtime_policy), boot_aggregates=boot_aggregates,
            hash_alg=Hash.SHA256,
        )
        if f:
            try:
                mode = ast.Entry(line).mode
                name = getattr(mode, "path", None) or getattr(mode, "name")
                result["failing"].append(name.name)
            except ast.ParserError:
                result["failing"].append(None)
    return result


def regex_oracle(seed, count):
    # pylint: disable=import-outside-toplevel
    import random
    import signal
    import warnings

    from keylime.common import validators

    warnings.simplefilter("ignore")  # Python's FutureWarning on "[[", "&&", ...
    rng = random.Random(seed)
    atoms = ["a", "b", "/", "x", "\\.", ".", "é", "1", "\\d", "\\w", "\\s", "\\W", "\\S", "\\D",
             "\\n", "\\x61", "\\141", "Z", "-", "{", "}", "]"]
    class_items = ["a", "b", "x-z", "\\d", "\\w", "\\s", "/", ".", "-", "\\]", "é", "\\W", "&&", "[", "^"]
    assertions = ["^", "\\A", "\\b", "\\B", "\\Z"]

    def atom(depth):
        r = rng.random()
        if depth > 2 or r < 0.4:
            return rng.choice(atoms), True
        if r < 0.55:
            items = "".join(rng.choice(class_items) for _ in range(rng.randint(1, 3)))
            if items.startswith("^"):
                items = "a" + items
            return "[" + rng.choice(["", "^"]) + items + "]", True
        if r < 0.8:
            kind = rng.choice(["(", "(?:", f"(?P<g{rng.randrange(10**9)}>", "(?i:", "(?s:", "(?m:", "(?-i:"])
            return kind + alternation(depth + 1, False) + ")", True
        return rng.choice(assertions), False

    def branch(depth, top):
        out = ""
        for _ in range(rng.randint(0, 4)):
            a, repeatable = atom(depth)
            q = rng.choice(["", "", "", "*", "+", "?", "*?", "{2}", "{1,2}", "{,2}", "{2,}", "+?", "??"])
            out += a + (q if repeatable else "")
        # A `$` without `m` may only end a top-level branch (see pyregex.rs).
        if top and rng.random() < 0.2:
            out += "$"
        return out

    def alternation(depth, top):
        return "|".join(branch(depth, top) for _ in range(rng.choice([1, 1, 1, 2, 3])))

    def paths():
        alphabet = "ab/.-_x\n é1Z{}]"
        found = {"", "/", "a", "\n"}
        while len(found) < 40:
            found.add("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))))
        return sorted(found)

    class Slow(Exception):
        pass

    def slow(*_):
        raise Slow()

    signal.signal(signal.SIGALRM, slow)
    out = []
    while len(out) < count:
        pattern = alternation(0, True)
        compiled, err = validators.valid_exclude_list([pattern])
        if err or compiled is None:
            continue
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # skip what backtracks for long
        try:
            out.append([pattern, [[p, compiled.match(p) is not None] for p in paths()]])
        except Slow:
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return out


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("judge", "judge-many", "regex-oracle"):
        raise SystemExit(__doc__)
    keylime_env()
    if sys.argv[1] == "regex-oracle":
        print(json.dumps(regex_oracle(int(sys.argv[2]), int(sys.argv[3]))))
    elif sys.argv[1] == "judge":
        args = sys.argv[2:]
        print(json.dumps(judge(args[0], args[1], args[2] if len(args) > 2 else None)))
    else:
        with open(sys.argv[2], encoding="utf-8") as f:
            cases = json.load(f)
        print(json.dumps([
            judge(c["policy"], c["log"], c.get("pcr10"), c.get("boot_aggregates")) for c in cases
        ]))


if __name__ == "__main__":
    main()
