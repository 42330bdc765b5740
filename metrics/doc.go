// Package metrics exposes the relay to Prometheus.
//
// The proxy package knows nothing of Prometheus: it keeps plain counters and
// hands out a consistent copy of them as proxy.Status (plus one
// proxy.ReplicaInfo per downstream session). This package turns that copy
// into metric families when Prometheus scrapes, so nothing is updated on the
// replication path for the sake of metrics and nothing here can disagree with
// INFO, which reads the same Status.
//
// Every family the relay defines starts with redis_relay_, uses base units
// (bytes, seconds) and ends in _total when it is a counter. Where
// redis_exporter already has a name for the same quantity on a stock Redis
// replica, the name here follows it, so dashboards read alike. Names lists
// them all; docs/metrics.md describes each one.
package metrics
