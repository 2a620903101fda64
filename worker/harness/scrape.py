"""One scrape of a worker's `/metrics`, by sample name and labels."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[dict[str, str], float]


@dataclass(frozen=True)
class Scrape:
    """Samples by name (`sla_events_consumed_total`, `..._bucket`), each a list of
    (labels, value)."""

    samples: dict[str, list[Sample]]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[str, list[Sample]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return cls(samples)

    def values(self, name: str) -> list[Sample]:
        return self.samples.get(name, [])

    def total(self, name: str, **match: str) -> float:
        """The sum of the samples whose labels include `match`."""
        return sum(
            value
            for labels, value in self.values(name)
            if all(labels.get(k) == v for k, v in match.items())
        )

    def consumed(self) -> int:
        """Input messages consumed, whatever became of them."""
        return int(self.total("sla_events_consumed_total"))

    def lag(self) -> tuple[int, int]:
        """(sum of per-partition consumer lag, number of partitions reporting it)."""
        values = self.values("sla_consumer_lag_messages")
        return int(sum(v for _, v in values)), len(values)

    def histogram(self, name: str) -> tuple[int, float, list[tuple[float, int]]]:
        """(count, sum, cumulative buckets) of an unlabelled histogram."""
        buckets = sorted(
            (float(labels["le"]), int(value))
            for labels, value in self.values(f"{name}_bucket")
            if "le" in labels
        )
        return int(self.total(f"{name}_count")), self.total(f"{name}_sum"), buckets
