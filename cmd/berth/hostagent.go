package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/berthvm/berth/hostagent"
)

func newHostagentCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "hostagent NAME",
		Short:  "Run an instance's host agent (started by \"berth start\")",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := lookup(args[0])
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("instance", inst.Name)
			routeLogrus(log.With("component", "usernet"))
			log.Info("host agent starting", "version", version, "pid", os.Getpid())
			err = hostagent.Run(cmd.Context(), inst, log)
			if err != nil {
				log.Error("host agent stopped", "err", err)
			} else {
				log.Info("host agent stopped")
			}
			return err
		},
	}
}
