package webhooks

import (
	"context"
	"net/http"
	"strings"
)

func init() { register("discord", parseDiscord) }

// Discord interaction types.
const (
	discordPing             = 1
	discordCommand          = 2
	discordMessageComponent = 3
)

// DiscordAPIBase is where follow-up messages of deferred interactions go.
const DiscordAPIBase = "https://discord.com/api/v10"

var (
	discordPong     = []byte(`{"type":1}`)
	discordDeferred = []byte(`{"type":5,"data":{"flags":64}}`)
)

var (
	discordInteractions  = new(jsonReader)
	discordType          = discordInteractions.path("type")
	discordGuildID       = discordInteractions.path("guild_id")
	discordApplicationID = discordInteractions.path("application_id")
	discordToken         = discordInteractions.path("token")
)

type discordInteraction struct {
	Type          int64
	GuildID       string
	ApplicationID string
	Token         string
}

func readDiscordInteraction(b []byte) (discordInteraction, error) {
	body, err := discordInteractions.parse(b)
	if err != nil {
		return discordInteraction{}, err
	}
	di := discordInteraction{
		Type:          body.int(discordType),
		GuildID:       body.str(discordGuildID),
		ApplicationID: body.str(discordApplicationID),
		Token:         body.str(discordToken),
	}
	return di, body.err()
}

func parseDiscord(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "discord")
	if strings.TrimSuffix(sub, "/") != "interactions" {
		// link-identity, unlink-identity, configure: control views.
		return passOn, nil
	}
	if env.DiscordPublicKey != nil && !verifyDiscord(env.DiscordPublicKey, req.Header, req.Body) {
		return reject(http.StatusUnauthorized, ReasonBadSignature), nil
	}
	di, err := readDiscordInteraction(req.Body)
	if err != nil {
		return rejected(ReasonBadBody), nil
	}
	if di.Type == discordPing {
		if env.DiscordPublicKey == nil {
			// Discord requires a verified PONG; without the key only
			// control can check the signature.
			return passOn, nil
		}
		return respondJSON(http.StatusOK, discordPong, "challenge"), nil
	}
	in, err := env.integrationByExternalID(ctx, "discord", di.GuildID)
	res, err := env.captureFor("discord", in, err, rejected(ReasonNoRegion))
	if err != nil || res.Action != Capture {
		return res, err
	}
	if (di.Type == discordCommand || di.Type == discordMessageComponent) && di.ApplicationID != "" && di.Token != "" &&
		!strings.ContainsAny(di.ApplicationID+di.Token, "/?#%") {
		res.Regions = res.Regions[:1]
		res.Action = Callback
		res.Status = http.StatusOK
		res.ContentType = "application/json"
		res.Body = discordDeferred
		res.CallbackURL = DiscordAPIBase + "/webhooks/" + di.ApplicationID + "/" + di.Token
		res.Outcome = "callback"
		return res, nil
	}
	res.Action = ProxyFirst
	if di.Type == discordMessageComponent {
		res.Action = ProxyAll
	}
	return res, nil
}
