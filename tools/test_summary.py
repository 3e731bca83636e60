#!/usr/bin/env python3
"""Counts test results from a Bazel build-event JSON file.

Each test target's test.xml is read: every test case counts once (a target
without test cases, such as a shell test, counts as one). A target that failed
to build, timed out or crashed before writing its XML counts as one failure.
Prints the failing cases, then the final line "N passed, N failed".
Exit status: 0 when nothing failed.
"""
import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET


def xml_counts(path):
    """Returns (passed, failed, failed_names) from a JUnit XML file, or None."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    passed, failed, names = 0, 0, []
    for case in root.iter("testcase"):
        if case.get("status") == "notrun" or case.find("skipped") is not None:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            names.append(f"{case.get('classname')}.{case.get('name')}")
        else:
            passed += 1
    if passed + failed == 0:
        return None
    return passed, failed, names


def extra_counts(path):
    """Cases checked outside Bazel's tests: lines "PASS name" / "FAIL name"."""
    passed, failed, names = 0, 0, []
    if not path:
        return passed, failed, names
    with open(path) as f:
        for line in f:
            verdict, _, name = line.strip().partition(" ")
            if verdict == "PASS":
                passed += 1
            elif verdict == "FAIL":
                failed += 1
                names.append(name)
    return passed, failed, names


def main(events_path, extra_path=None):
    results = {}  # label -> (status, xml path) of the last attempt
    summaries = {}  # label -> overall status
    test_targets = set()  # labels of configured test rules
    unbuilt = []  # test targets whose build failed or was aborted
    with open(events_path) as f:
        for line in f:
            event = json.loads(line)
            eid = event.get("id", {})
            if "testResult" in eid:
                label = eid["testResult"]["label"]
                body = event.get("testResult", {})
                xml = None
                for out in body.get("testActionOutput", []):
                    if out.get("name") == "test.xml":
                        xml = urllib.parse.urlparse(out["uri"]).path
                results[label] = (body.get("status", "NO_STATUS"), xml)
            elif "testSummary" in eid:
                label = eid["testSummary"]["label"]
                summaries[label] = event.get("testSummary", {}).get(
                    "overallStatus", "NO_STATUS")
            elif "targetConfigured" in eid:
                kind = event.get("configured", {}).get("targetKind", "")
                if kind.endswith("_test rule"):
                    test_targets.add(eid["targetConfigured"]["label"])
            elif "targetCompleted" in eid:
                completed = event.get("completed")
                if event.get("aborted") or (
                        completed is not None and not completed.get("success")):
                    unbuilt.append(eid["targetCompleted"]["label"])

    passed = failed = 0
    failures = []
    labels = sorted(set(results) | set(summaries))
    for label in labels:
        status = summaries.get(label, results.get(label, ("NO_STATUS",))[0])
        xml = results.get(label, (None, None))[1]
        counts = xml_counts(xml) if xml else None
        ok = status in ("PASSED", "FLAKY")
        if counts is None:
            if ok:
                passed += 1
            else:
                failed += 1
                failures.append(f"{label} ({status})")
            continue
        p, fl, names = counts
        if not ok and fl == 0:
            # Crashed or timed out after some cases passed.
            fl = 1
            names = [f"({status})"]
        passed += p
        failed += fl
        failures += [f"{label}: {n}" for n in names]
    for label in sorted(set(unbuilt)):
        if label in test_targets and label not in summaries \
                and label not in results:
            failed += 1
            failures.append(f"{label} (did not build)")

    p, fl, names = extra_counts(extra_path)
    passed += p
    failed += fl
    failures += names

    print(f"test targets: {len(set(labels) | test_targets)}")
    for f in failures:
        print(f"FAILED {f}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
