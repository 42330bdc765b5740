package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/rdbparse"
)

func rdbCommand() *cli.Command {
	return &cli.Command{
		Name:  "rdb",
		Usage: "tools for RDB files",
		Subcommands: []*cli.Command{
			{
				Name:      "inspect",
				Usage:     "summarise an RDB file: header, aux fields, keys per database and type, checksum",
				ArgsUsage: "FILE",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("rdb inspect takes one FILE, got %d arguments", c.NArg())
					}
					return inspectRDB(c.App.Writer, c.Args().First(), c.Bool("json"))
				},
			},
		},
	}
}

// inspectRDB prints the summary of the RDB at path. When the file cannot be
// read to the end, what was read is printed before the error is returned.
func inspectRDB(w io.Writer, path string, asJSON bool) error {
	sum, perr := rdbparse.ParseFile(path)
	if sum != nil {
		var err error
		if asJSON {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			err = enc.Encode(sum)
		} else {
			_, err = io.WriteString(w, renderSummary(path, sum))
		}
		if err != nil {
			return err
		}
	}
	if perr != nil {
		return fmt.Errorf("inspect %s: %w", path, perr)
	}
	return nil
}

// renderSummary formats an RDB summary for people.
func renderSummary(path string, s *rdbparse.Summary) string {
	var b strings.Builder
	row := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-12s%s\n", label, fmt.Sprintf(format, args...))
	}
	row("file", "%s", path)
	row("size", "%d bytes (%s)", s.Size, formatBytes(s.Size))
	row("format", "%s, RDB version %d", s.Magic, s.Version)
	if s.RedisVer != "" {
		row("redis-ver", "%s", printable(s.RedisVer))
	}
	if s.ReplID != "" || s.HasReplOffset || s.ReplStreamDB >= 0 {
		off, db := "-", "-"
		if s.HasReplOffset {
			off = strconv.FormatInt(s.ReplOffset, 10)
		}
		if s.ReplStreamDB >= 0 {
			db = strconv.Itoa(s.ReplStreamDB)
		}
		row("replication", "repl-id %s, repl-offset %s, repl-stream-db %s", printable(orDash(s.ReplID)), off, db)
	}
	row("keys", "%d (%d with an expiry)", s.Keys, s.Expires)
	row("functions", "%d libraries", s.Functions)
	row("checksum", "%s", checksumText(s))
	if !s.Complete {
		row("complete", "no: the file ends before the EOF opcode")
	}
	if s.Unparsed != "" {
		row("unparsed", "%s", printable(s.Unparsed))
	}

	if len(s.Aux) > 0 {
		b.WriteString("\naux fields\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		for _, k := range slices.Sorted(maps.Keys(s.Aux)) {
			v := s.Aux[k]
			if k == "ctime" {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					v += " (" + time.Unix(n, 0).UTC().Format(time.RFC3339) + ")"
				}
			}
			fmt.Fprintf(tw, "  %s\t%s\n", printable(k), printable(v))
		}
		tw.Flush()
	}

	if len(s.DBs) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "DB\tKEYS\tEXPIRES\tRESIZEDB HINT\n")
		for _, db := range s.DBs {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d/%d\n", db.DB, db.Keys, db.Expires, db.HintKeys, db.HintExpires)
		}
		tw.Flush()
	}

	if len(s.Types) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "TYPE\tKEYS\tBYTES\tELEMENTS\tMEMORY (est.)\n")
		for _, name := range slices.Sorted(maps.Keys(s.Types)) {
			t := s.Types[name]
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", name, t.Count, t.Bytes, t.Elements, formatBytes(t.MemBytes))
		}
		tw.Flush()
	}

	if len(s.Modules) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "MODULE TYPE\tKEYS\n")
		for _, name := range slices.Sorted(maps.Keys(s.Modules)) {
			fmt.Fprintf(tw, "%s\t%d\n", printable(name), s.Modules[name])
		}
		tw.Flush()
	}
	return b.String()
}

func checksumText(s *rdbparse.Summary) string {
	switch s.Checksum {
	case rdbparse.ChecksumOK:
		return fmt.Sprintf("ok (crc64 %016x)", s.StoredCRC)
	case rdbparse.ChecksumMismatch:
		return fmt.Sprintf("MISMATCH: stored %016x, computed %016x", s.StoredCRC, s.ComputedCRC)
	case rdbparse.ChecksumDisabled:
		return "disabled (written with rdbchecksum no)"
	case rdbparse.ChecksumMissing:
		return "missing (no EOF opcode and checksum at the end)"
	case "":
		return "not checked (the file could not be read to the end)"
	}
	return s.Checksum
}

// printable returns v as is when every rune is graphic, else quoted with
// escapes, so that binary aux values cannot garble the terminal.
func printable(v string) string {
	for _, r := range v {
		if !strconv.IsGraphic(r) || r == utf8.RuneError {
			return strconv.QuoteToGraphic(v)
		}
	}
	return v
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
