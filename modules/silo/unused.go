package silo

import (
	"strings"

	"go.uber.org/zap"
)

// WarnMonolithOptions logs, once per provision, the options a handler was
// given that do nothing because the mode is monolith, where every handler
// passes every request on. It is a warning and not an error: one Caddyfile
// serving both a multi-region and a single-region deployment, with only
// the mode changed, is how docs/design.md describes monolith mode.
func (a *App) WarnMonolithOptions(logger *zap.Logger, handler string, options []string) {
	if a.Control() || len(options) == 0 {
		return
	}
	logger.Warn(handler+": the sentry_silo mode is monolith, so every request is passed on and these options do nothing: "+strings.Join(options, ", "),
		zap.Strings("unused_options", options))
}
