package torch

import (
	"errors"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof/serverprof"
)

// mapServerError is the one place serverprof's errors become the contract's: a request
// the server cannot serve as asked (steps or options on vLLM, an activity trtllm-serve
// does not know, no profiling route) is unsupported, a server that does not answer is
// gone, a profile already running is busy. Anything else keeps its own text.
func mapServerError(err error) error {
	var optErr *OptionError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &optErr):
		return shared.Wrap(shared.ErrUnsupported, err)
	case errors.Is(err, serverprof.ErrUnsupported), errors.Is(err, serverprof.ErrNotFound):
		return shared.Wrap(shared.ErrUnsupported, err)
	case errors.Is(err, serverprof.ErrServerDown):
		return shared.Wrap(shared.ErrTargetGone, err)
	case errors.Is(err, serverprof.ErrAlreadyRunning):
		return shared.Wrap(shared.ErrBusy, err)
	}
	return err
}
