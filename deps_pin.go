//go:build tools

// This file pins the libraries the modules are being built on, so that
// parallel work does not race on go.mod. It is removed once every one of
// them is imported by real code.
package caddysilo

import (
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "golang.org/x/oauth2"
	_ "golang.org/x/sync/singleflight"
	_ "modernc.org/sqlite"
)
