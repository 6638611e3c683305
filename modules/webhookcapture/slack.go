package webhookcapture

import (
	"context"

	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
	"github.com/sentrysilo/caddy-silo/modules/silo"
)

// provisionSlack sets up the Slack Web API calls the edge makes as the
// app (the loading modal, Seer's halt messages) and Seer routing. The bot
// tokens come from the credential machinery the credential proxy uses,
// reading the directory's database when a call is made; nothing is
// opened here.
func (h *Handler) provisionSlack(app *silo.App, env *webhooks.Env) error {
	env.SlackLoadingModal = h.SendSlackResponseFromControl
	env.SlackDedupeSeerEvents = h.SlackDedupeSeerEvents == nil || *h.SlackDedupeSeerEvents
	env.Identities = appIdentities{app}
	creds := credentials.New(credentials.Config{}, app.CredentialStore)
	api, err := webhooks.NewSlackAPI(webhooks.SlackAPIOptions{Base: h.SlackAPIBase, Auth: creds})
	if err != nil {
		return err
	}
	h.slack = api
	return nil
}

// callSlack starts call (nil: nothing) and returns the wait for its end,
// bounded by the Slack client's timeout (2 s). The call outlives a client that
// hangs up: a loading modal is worth opening as long as its trigger_id
// lives. Its failure is logged and counted, never answered: the request
// is stored (or acknowledged) either way, as Sentry does.
func (h *Handler) callSlack(ctx context.Context, call *webhooks.SlackCall) (wait func()) {
	if call == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := h.slack.Call(context.WithoutCancel(ctx), call)
		if err != nil {
			slackCallsTotal.WithLabelValues(call.Kind, "error").Inc()
			h.logger.Warn("slack call failed", zap.String("kind", call.Kind), zap.String("method", call.Method),
				zap.Int64("integration_id", call.Integration.ID), zap.Error(err))
			return
		}
		slackCallsTotal.WithLabelValues(call.Kind, "ok").Inc()
	}()
	return func() { <-done }
}

// appIdentities reads Seer's identity links from the directory's
// database, whichever engine it is, when an event needs them: the
// database may be opened after the handler is provisioned.
type appIdentities struct{ app *silo.App }

func (a appIdentities) store() (webhooks.SlackIdentities, error) {
	if ids, ok := a.app.CredentialStore().(webhooks.SlackIdentities); ok {
		return ids, nil
	}
	return nil, errNoDirectory
}

func (a appIdentities) LinkedUser(ctx context.Context, providerType, workspaceID, slackUserID string) (int64, error) {
	ids, err := a.store()
	if err != nil {
		return 0, err
	}
	return ids.LinkedUser(ctx, providerType, workspaceID, slackUserID)
}

func (a appIdentities) MemberOrganizations(ctx context.Context, userID int64, orgIDs []int64) ([]int64, error) {
	ids, err := a.store()
	if err != nil {
		return nil, err
	}
	return ids.MemberOrganizations(ctx, userID, orgIDs)
}
