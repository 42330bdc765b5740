package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/internal/redisproc"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show a running relay's upstream link, snapshot, guard and replicas",
		UsageText: "redis-relay status [--addr HOST:PORT] [--password PW] [--watch DURATION]",
		Flags: append(adminFlags(),
			&cli.DurationFlag{Name: "watch", Usage: "redraw every `DURATION` until Ctrl-C"},
		),
		Action: func(c *cli.Context) error {
			client := adminClient(c)
			defer client.Close()
			addr := c.String("addr")
			if every := c.Duration("watch"); every > 0 {
				return watchStatus(c.Context, c.App.Writer, client, addr, every)
			}
			info, err := fetchInfo(c.Context, client)
			if err != nil {
				return explainAdminError(addr, err)
			}
			_, err = io.WriteString(c.App.Writer, renderStatus(addr, info))
			return err
		},
	}
}

// watchStatus clears the screen and redraws the status every interval
// until ctx ends. A relay that cannot be reached is shown as such, and
// polled again.
func watchStatus(ctx context.Context, w io.Writer, client *redis.Client, addr string, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		info, err := fetchInfo(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		var b bytes.Buffer
		b.WriteString("\x1b[H\x1b[2J") // cursor home, clear screen
		fmt.Fprintf(&b, "%s  every %s, Ctrl-C to stop\n\n", time.Now().Format(time.TimeOnly), every)
		if err != nil {
			fmt.Fprintf(&b, "%v\n", explainAdminError(addr, err))
		} else {
			b.WriteString(renderStatus(addr, info))
		}
		if _, err := w.Write(b.Bytes()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// relayInfo is an INFO reply: its fields, and the slaveN lines parsed.
type relayInfo struct {
	fields   map[string]string
	replicas []replicaLine
}

// replicaLine is one slaveN:ip=...,port=...,state=...,offset=...,lag=...
// line, with the relay's rdb_sent_bytes=...,rdb_size_bytes=... after it.
type replicaLine struct {
	addr    string
	state   string
	offset  int64
	lag     string // seconds since the last ACK, as the relay reports it
	rdbSent int64  // snapshot bytes sent in this session's full sync; -1 when not reported
	rdbSize int64  // that snapshot's size; -1 while unknown or not reported
}

func fetchInfo(ctx context.Context, client *redis.Client) (*relayInfo, error) {
	text, err := client.Do(ctx, "INFO", "everything").Text()
	if err != nil {
		return nil, err
	}
	return parseInfo(text), nil
}

// parseInfo reads an INFO reply (redisproc.ParseInfo) and its replica
// lines, slave0, slave1, ... in that order.
func parseInfo(text string) *relayInfo {
	in := &relayInfo{fields: redisproc.ParseInfo(text)}
	for i := 0; ; i++ {
		v, ok := in.fields["slave"+strconv.Itoa(i)]
		if !ok {
			break
		}
		in.replicas = append(in.replicas, parseReplicaLine(v))
	}
	return in
}

func parseReplicaLine(v string) replicaLine {
	kv := make(map[string]string)
	for part := range strings.SplitSeq(v, ",") {
		if k, val, ok := strings.Cut(part, "="); ok {
			kv[k] = val
		}
	}
	r := replicaLine{addr: net.JoinHostPort(kv["ip"], kv["port"]), state: kv["state"], lag: kv["lag"], rdbSent: -1, rdbSize: -1}
	r.offset, _ = strconv.ParseInt(kv["offset"], 10, 64)
	if n, err := strconv.ParseInt(kv["rdb_sent_bytes"], 10, 64); err == nil {
		r.rdbSent = n
	}
	if n, err := strconv.ParseInt(kv["rdb_size_bytes"], 10, 64); err == nil {
		r.rdbSize = n
	}
	return r
}

func (in *relayInfo) str(k string) string {
	if v, ok := in.fields[k]; ok {
		return v
	}
	return "-"
}

func (in *relayInfo) int(k string) (int64, bool) {
	n, err := strconv.ParseInt(in.fields[k], 10, 64)
	return n, err == nil
}

// seconds reads a field in seconds as a duration, "-" when absent.
func (in *relayInfo) seconds(k string) string {
	if n, ok := in.int(k); ok && n >= 0 {
		return (time.Duration(n) * time.Second).String()
	}
	return "-"
}

// unquote reads a field the relay writes with strconv.Quote.
func (in *relayInfo) unquote(k string) string {
	v := in.fields[k]
	if s, err := strconv.Unquote(v); err == nil {
		return s
	}
	return v
}

// renderStatus formats an INFO reply for an operator.
func renderStatus(addr string, in *relayInfo) string {
	var b strings.Builder
	row := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	ver := "redis-relay " + in.str("relay_version")
	if _, ok := in.fields["relay_version"]; !ok {
		ver = "not a relay: redis " + in.str("redis_version")
	}
	row("relay", "%s (%s, up %s)", addr, ver, in.seconds("uptime_in_seconds"))

	master := "none: waiting for REPLICAOF"
	if h := in.fields["master_host"]; h != "" {
		master = net.JoinHostPort(h, in.fields["master_port"])
	}
	link := in.str("master_link_status")
	if st, ok := in.fields["upstream_link_state"]; ok {
		link += " (" + st + ")"
	}
	lastIO := "never"
	if n, ok := in.int("master_last_io_seconds_ago"); ok && n >= 0 {
		lastIO = fmt.Sprintf("%d s ago", n)
	}
	upstream := fmt.Sprintf("%s, link %s, last io %s", master, link, lastIO)
	if in.fields["relay_redis_version_source"] == "snapshot" {
		upstream += ", redis " + in.str("redis_version")
	}
	row("upstream", "%s", upstream)
	if slots, ok := in.fields["cluster_shard_slots"]; ok {
		row("", "cluster shard: slots %s, master %s, %s nodes", slots, in.str("cluster_shard_master_id"), in.str("cluster_shard_nodes"))
	}
	if in.fields["master_link_status"] != "up" {
		if n, ok := in.int("master_link_down_since_seconds"); ok && n >= 0 {
			row("", "down for %s", time.Duration(n)*time.Second)
		}
		if e := in.unquote("upstream_last_error"); e != "" {
			if reason := in.fields["upstream_link_down_reason"]; reason != "" {
				e = reason + ": " + e
			}
			row("", "last error: %s", e)
		}
	}
	if in.fields["master_sync_in_progress"] == "1" {
		row("full sync", "%s", upstreamSync(in))
	}
	row("offset", "%s (acked upstream %s)", in.str("master_repl_offset"), in.str("upstream_acked_offset"))
	row("replid", "%s", in.str("master_replid"))

	snap := "none yet"
	if in.fields["repl_backlog_active"] == "1" {
		size, _ := in.int("snapshot_bytes")
		keys := in.str("snapshot_keys")
		if keys == "-1" {
			keys = "?"
		}
		snap = fmt.Sprintf("offset %s, %s, age %s, %s keys", in.str("snapshot_offset"), formatBytes(size), in.seconds("snapshot_age_seconds"), keys)
	}
	if in.fields["snapshot_in_progress"] == "1" {
		snap += " (a new one is arriving)"
	}
	row("snapshot", "%s", snap)
	if _, ok := in.fields["log_first_offset"]; ok {
		disk, _ := in.int("log_disk_bytes")
		row("log", "[%s, %s), %s on disk in %s segments", in.str("log_first_offset"), in.str("log_next_offset"), formatBytes(disk), in.str("log_segments"))
	}
	switch in.fields["guard_tripped"] {
	case "1":
		row("guard", "TRIPPED %s ago: %s", in.seconds("guard_since_seconds"), in.unquote("guard_reason"))
		row("", "if the new history is the one to keep: redis-relay guard release --addr %s", addr)
	case "0":
		row("guard", "ok (%s trips so far)", in.str("guard_trips"))
	default:
		row("guard", "-")
	}

	b.WriteString("\n")
	if len(in.replicas) == 0 {
		b.WriteString("no replicas connected\n")
		return b.String()
	}
	head, haveHead := in.int("master_repl_offset")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "REPLICA\tSTATE\tACK OFFSET\tLAG (bytes)\tLAG (s)\tSNAPSHOT\n")
	for _, r := range in.replicas {
		lagBytes, lagSec := "-", "-"
		if r.state == "online" {
			lagSec = r.lag
			if haveHead {
				lagBytes = strconv.FormatInt(head-r.offset, 10)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.addr, r.state, r.offset, lagBytes, lagSec, replicaSync(r))
	}
	tw.Flush()
	return b.String()
}

// upstreamSync describes the relay's full sync from its upstream: bytes and
// rate always, progress against the announced size, or against an estimate
// (marked "~") when a diskless master announces none.
func upstreamSync(in *relayInfo) string {
	read, _ := in.int("master_sync_read_bytes")
	total, _ := in.int("master_sync_total_bytes")
	elapsed, _ := in.int("master_sync_elapsed_seconds")
	rate, hasRate := in.int("master_sync_rate_bytes_per_sec")
	if _, ok := in.fields["master_sync_elapsed_seconds"]; ok && elapsed == 0 && read == 0 {
		return "waiting for the upstream to start sending its snapshot"
	}
	speed := ""
	if hasRate {
		speed = " at " + formatBytes(rate) + "/s"
	}
	left := func(size int64) string {
		if rate <= 0 || size <= read {
			return ""
		}
		return fmt.Sprintf(", about %s left", (time.Duration(float64(size-read)/float64(rate)) * time.Second).Round(time.Second))
	}
	if total >= 0 {
		return fmt.Sprintf("%s%% received, %s of %s%s%s", in.str("master_sync_perc"), formatBytes(read), formatBytes(total), speed, left(total))
	}
	out := fmt.Sprintf("%s received%s, size not announced (diskless upstream)", formatBytes(read), speed)
	if est, ok := in.int("master_sync_estimated_total_bytes"); ok {
		from := in.str("master_sync_estimate_source")
		switch from {
		case "previous_snapshot":
			from = "the previous snapshot"
		case "master_used_memory":
			from = "the master's used_memory, which overstates it"
		}
		out += fmt.Sprintf("; estimate ~%s from %s: ~%s%%%s", formatBytes(est), from, in.str("master_sync_estimated_perc"), left(est))
	}
	return out
}

// replicaSync describes a replica's snapshot transfer for the SNAPSHOT
// column: "-" when there is none to show.
func replicaSync(r replicaLine) string {
	switch {
	case r.state == "wait_bgsave":
		return "waiting"
	case r.state != "send_bulk" || r.rdbSent < 0:
		return "-"
	case r.rdbSize > 0:
		return fmt.Sprintf("%s of %s sent (%.1f%%)", formatBytes(r.rdbSent), formatBytes(r.rdbSize), 100*float64(r.rdbSent)/float64(r.rdbSize))
	}
	return formatBytes(r.rdbSent) + " sent, size not known yet"
}

// formatBytes writes n in binary units for people: "12.3 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
