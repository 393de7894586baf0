package main

import (
	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
)

// triggerSpecs turns `run --trigger-*` into at most two triggers, "log" and "metric",
// sharing the window's duration, the cooldown and the maximum; a setting that cannot work
// is a usage error before anything launches.
func triggerSpecs(c *cli.Context) ([]triggers.Spec, error) {
	logRE, metric := c.String("trigger-log"), c.String("trigger-metric")
	below, above := c.IsSet("trigger-below"), c.IsSet("trigger-above")
	shared := []string{"trigger-duration", "trigger-cooldown", "trigger-max"}
	if logRE == "" && metric == "" {
		for _, f := range append(shared, "trigger-below", "trigger-above") {
			if c.IsSet(f) {
				return nil, usagef("--%s: there is no trigger to apply it to; add --trigger-log REGEX or --trigger-metric 'NAME<X'", f)
			}
		}
		return nil, nil
	}
	if (below || above) && logRE == "" {
		return nil, usagef("--trigger-below/--trigger-above compare the number --trigger-log captures; a --trigger-metric says its threshold itself ('NAME<X')")
	}
	base := triggers.Spec{Duration: c.Duration("trigger-duration").String(), Cooldown: c.Duration("trigger-cooldown").String(), Max: c.Int("trigger-max")}
	if base.Max < 1 {
		return nil, usagef("--trigger-max: at least 1, got %d", base.Max)
	}
	var specs []triggers.Spec
	if logRE != "" {
		s := base
		s.Name, s.Log = "log", logRE
		if below {
			v := c.Float64("trigger-below")
			s.Below = &v
		}
		if above {
			v := c.Float64("trigger-above")
			s.Above = &v
		}
		specs = append(specs, s)
	}
	if metric != "" {
		s := base
		s.Name, s.Metric = "metric", metric
		specs = append(specs, s)
	}
	for _, s := range specs {
		if err := triggers.Check(s); err != nil {
			return nil, usagef("--trigger-%s: %v", s.Name, err)
		}
	}
	return specs, nil
}
