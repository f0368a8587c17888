package localexec

import (
	"fmt"
	"slices"
	"strings"
)

// argRule is how an allowed program can be made to run another one
// through its arguments (CWE-88).
type argRule struct {
	// long are options refused as a whole argument or as "option=value".
	long []string
	// short are one-letter options refused alone or inside a bundle such
	// as -xI.
	short string
	// takesValue are one-letter options whose value follows them in the
	// same argument (-fFILE): a bundle's scan stops there.
	takesValue string
	// safe are real options that start like a refused one (tar
	// --checkpoint beside --checkpoint-action).
	safe []string
}

// argRules are the known ways, by program name (GTFOBins, reliability.md
// §3.5).
var argRules = map[string]argRule{
	"find":   {long: []string{"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls"}},
	"rg":     {long: []string{"--pre"}},
	"fd":     {long: []string{"--exec", "--exec-batch"}, short: "xX"},
	"fdfind": {long: []string{"--exec", "--exec-batch"}, short: "xX"},
	"tar": {long: []string{"--to-command", "--checkpoint-action", "--use-compress-program", "--info-script", "--new-volume-script", "--rmt-command", "--rsh-command"},
		short: "IF", takesValue: "fCbHKNgTVX", safe: []string{"--checkpoint"}},
	"zip":        {long: []string{"--unzip-command"}, short: "T"},
	"sort":       {long: []string{"--compress-program"}},
	"man":        {long: []string{"--pager", "--html"}, short: "PH"},
	"less":       {long: []string{"--lesskey-file"}},
	"split":      {long: []string{"--filter"}},
	"ssh-keygen": {short: "D"},
	"curl":       {long: []string{"--config"}, short: "K", takesValue: "oudHXAErTwxbcFmyzC"},
	"wget":       {long: []string{"--execute", "--config", "--use-askpass"}, short: "e", takesValue: "OPoaDiBUTtwQ"},
}

// checkArgs refuses the arguments that make prog run another program.
func checkArgs(prog string, args []string) error {
	rule, ok := argRules[prog]
	if !ok {
		return nil
	}
	for i, a := range args {
		if a == "--" && prog != "find" {
			return nil
		}
		// GNU's getopt takes an unambiguous start of a long option for
		// the whole (--to-comm for --to-command).
		name, _, _ := strings.Cut(a, "=")
		for _, l := range rule.long {
			abbreviated := strings.HasPrefix(name, "--") && len(name) > 3 && strings.HasPrefix(l, name) && !slices.Contains(rule.safe, name)
			if a == l || name == l || abbreviated {
				return fmt.Errorf("args[%d]: %s %s runs other programs or writes where it is told, and is refused", i, prog, l)
			}
		}
		// tar also takes its first argument as a bundle without a dash
		// (tar xIf).
		bundle := len(a) > 1 && a[0] == '-' && a[1] != '-' || prog == "tar" && i == 0 && a != "" && a[0] != '-'
		if rule.short != "" && bundle {
			for _, r := range strings.TrimPrefix(a, "-") {
				if strings.ContainsRune(rule.short, r) {
					return fmt.Errorf("args[%d]: %s -%c runs other programs or reads their configuration, and is refused", i, prog, r)
				}
				if strings.ContainsRune(rule.takesValue, r) {
					break // the rest is that option's value
				}
			}
		}
	}
	return nil
}
