#!/usr/bin/env python3
"""List what an application published to a CloudWatch endpoint (moto server in the tests).

  cloudwatch_metrics.py --endpoint http://127.0.0.1:PORT --namespace APP [--values]

Prints one JSON object: {"metrics": [[name, [dimension names, sorted]], ...] (sorted, unique),
"datapoints": {name: sample count summed over all dimension sets}} and, with --values, the
dimension values of every metric under "detail". Dummy credentials are used when none are set.
"""

import argparse
import datetime
import json
import os

import boto3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--values", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "x")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "x")
    cw = boto3.client("cloudwatch", endpoint_url=a.endpoint, region_name=a.region)
    found = []
    kwargs = {"Namespace": a.namespace}
    while True:
        page = cw.list_metrics(**kwargs)
        found.extend(page.get("Metrics", []))
        token = page.get("NextToken")
        if not token:
            break
        kwargs["NextToken"] = token
    shapes = sorted({(m["MetricName"], tuple(sorted(d["Name"] for d in m.get("Dimensions", [])))) for m in found})
    out = {"metrics": [[n, list(d)] for n, d in shapes]}
    now = datetime.datetime.now(datetime.timezone.utc)
    counts = {}
    for m in found:
        stats = cw.get_metric_statistics(
            Namespace=a.namespace, MetricName=m["MetricName"], Dimensions=m.get("Dimensions", []),
            StartTime=now - datetime.timedelta(hours=2), EndTime=now + datetime.timedelta(minutes=5),
            Period=60, Statistics=["SampleCount", "Sum"])
        for p in stats.get("Datapoints", []):
            c = counts.setdefault(m["MetricName"], {"samples": 0, "sum": 0.0})
            c["samples"] += p.get("SampleCount", 0)
            c["sum"] += p.get("Sum", 0.0)
    out["datapoints"] = counts
    if a.values:
        out["detail"] = sorted(
            [m["MetricName"], sorted((d["Name"], d["Value"]) for d in m.get("Dimensions", []))] for m in found)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
