package redisproc

import (
	"maps"
	"testing"
)

func TestParseInfo(t *testing.T) {
	text := "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\n\r\n" +
		"# Replication\r\nrole:master\r\nslave0:ip=127.0.0.1,port=6380,state=online\r\n" +
		"master_failover_state:no-failover\r\nconfig_file:\r\n" +
		"upstream_last_error:dial tcp 127.0.0.1:7000: connection refused\r\n"
	want := map[string]string{
		"redis_version":         "7.0.15",
		"process_id":            "42",
		"role":                  "master",
		"slave0":                "ip=127.0.0.1,port=6380,state=online",
		"master_failover_state": "no-failover",
		"config_file":           "",
		"upstream_last_error":   "dial tcp 127.0.0.1:7000: connection refused",
	}
	if got := ParseInfo(text); !maps.Equal(got, want) {
		t.Errorf("ParseInfo = %v\nwant %v", got, want)
	}
	if got := ParseInfo(""); len(got) != 0 {
		t.Errorf("ParseInfo(\"\") = %v, want no fields", got)
	}
}
