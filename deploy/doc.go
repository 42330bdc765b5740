// Package deploy holds no code. The directory carries redis-relay's
// deployment files (Dockerfile, Grafana dashboard and provisioning,
// Prometheus scrape config and alert rules, systemd unit, example config,
// Kubernetes manifests); deploy_test.go checks that they agree with each
// other, with docker-compose.yml at the repository root and with the metric
// names package metrics exposes.
package deploy
