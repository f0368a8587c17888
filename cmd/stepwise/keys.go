package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/seal"
)

// keysCommand is `stepwise keys bootstrap-secret`: it prints the secret of
// the bootstrap API key that a deployment started with STEPWISE_AUTH=on
// makes (see access.BootstrapSecret), from the secret key alone.
func keysCommand(_ context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] != "bootstrap-secret" {
		fmt.Fprintln(e.stderr, "usage: stepwise keys bootstrap-secret [-secret-key-file FILE]   (or the key in STEPWISE_SECRET_KEY)")
		return exitUsage
	}
	fs := flag.NewFlagSet("stepwise keys bootstrap-secret", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	file := fs.String("secret-key-file", "", "file holding the secret key (the one in the deployment's Secrets Manager secret); default: STEPWISE_SECRET_KEY")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	text := e.getenv("STEPWISE_SECRET_KEY")
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			fmt.Fprintf(e.stderr, "stepwise: %v\n", err)
			return exitUsage
		}
		text = string(b)
	}
	if strings.TrimSpace(text) == "" {
		fmt.Fprintln(e.stderr, "stepwise: give the secret key: -secret-key-file FILE or STEPWISE_SECRET_KEY")
		return exitUsage
	}
	key, err := seal.ParseKey(strings.TrimSpace(text))
	if err != nil {
		fmt.Fprintf(e.stderr, "stepwise: the secret key: %v\n", err)
		return exitUsage
	}
	fmt.Fprintln(e.stdout, access.BootstrapSecret(key))
	return exitOK
}
