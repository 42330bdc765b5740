package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func guardCommand() *cli.Command {
	return &cli.Command{
		Name:  "guard",
		Usage: "the empty-master guard of a running relay",
		Subcommands: []*cli.Command{
			{
				Name:      "release",
				Usage:     "accept the new history the guard holds back (RELAY GUARD RELEASE)",
				UsageText: "redis-relay guard release [--addr HOST:PORT] [--password PW]",
				Description: "When the master comes back with a new, empty (or much smaller) dataset, the relay\n" +
					"keeps serving the old history and holds the new snapshot back. Release it only when\n" +
					"the new dataset is what the replicas should have: they will full-sync to it.",
				Flags: adminFlags(),
				Action: func(c *cli.Context) error {
					client := adminClient(c)
					defer client.Close()
					reply, err := client.Do(c.Context, "RELAY", "GUARD", "RELEASE").Text()
					if err != nil {
						return explainAdminError(c.String("addr"), err)
					}
					_, err = fmt.Fprintln(c.App.Writer, reply)
					return err
				},
			},
		},
	}
}
