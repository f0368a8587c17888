// Command stepwise runs task chains. `stepwise serve` is the server: the
// HTTP API of the reference system over an embedded SQLite store, with
// routing across the registered backends. `stepwise run` executes one
// chain file against Ollama or any OpenAI-compatible server and shows every
// step it took. `stepwise bootstrap` configures a running server the way
// the seed's bootstrap script did. Run `stepwise help` for the commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the execution failed or was interrupted
	exitUsage   = 2 // bad flags, config, chain or input
	exitSignals = 130
)

// env is what the process sees of its surroundings; tests replace it.
type env struct {
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	getenv  func(string) string
	workdir string
	homedir string
	// stdinIsTerminal and stderrIsTerminal decide between reading input
	// from stdin and live progress versus plain output.
	stdinIsTerminal  bool
	stderrIsTerminal bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	wd, _ := os.Getwd()
	home, _ := os.UserHomeDir()
	e := env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		workdir: wd, homedir: home,
		stdinIsTerminal:  isTerminal(os.Stdin),
		stderrIsTerminal: isTerminal(os.Stderr),
	}
	code := dispatch(ctx, os.Args[1:], e)
	if code != exitOK && ctx.Err() != nil {
		code = exitSignals
	}
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], e)
	case "serve":
		return serveCommand(ctx, args[1:], e)
	case "bootstrap":
		return bootstrapCommand(ctx, args[1:], e)
	case "keys":
		return keysCommand(ctx, args[1:], e)
	case jsWorkerCommand:
		return jsWorker(ctx)
	case "version", "-version", "--version":
		fmt.Fprintln(e.stdout, "stepwise", version)
		return exitOK
	case "help", "-h", "-help", "--help":
		usage(e.stdout)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "stepwise: unknown command %q (try `stepwise help`)\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `stepwise runs task chains: state machines of LLM calls, parsers, branches and tools.

Usage:
  stepwise serve [flags]   run the server: the HTTP API on a SQLite file (serve -h)
  stepwise bootstrap [flags] EMBED_MODEL TASK_MODEL CHAT_MODEL
                           register an Ollama backend and the default models with a
                           running server, and wait for the downloads (bootstrap -h)
  stepwise run [flags]     run one chain file (stepwise run -h lists the flags)
  stepwise keys bootstrap-secret [-secret-key-file FILE]
                           print the first API key of a deployment with STEPWISE_AUTH=on,
                           derived from its secret key
  stepwise version         print the version
  stepwise help            print this help
`)
}

// isTerminal reports whether f is a character device (a terminal) rather
// than a pipe or a file.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
