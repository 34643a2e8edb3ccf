package app

import (
	"errors"
	"flag"
)

// errHelp is flag's --help; errHelpShown says a subcommand printed its
// usage and the command should exit 0.
var (
	errHelp      = flag.ErrHelp
	errHelpShown = errors.New("help shown")
)

// IsHelp reports whether err only means usage was printed.
func IsHelp(err error) bool { return errors.Is(err, errHelpShown) || errors.Is(err, flag.ErrHelp) }
