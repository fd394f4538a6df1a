package router_test

import (
	"context"
	"database/sql"
	"errors"
	"log"

	"google.golang.org/grpc"

	"github.com/drplane/drplane/pkg/router"
)

// The intended use: one Router per process, Run under the process's
// context, WriteDB before every write. (Compiled, not run: it needs a
// coordinator; e2e/example/router is the runnable version.)
func ExampleRouter() {
	ctx := context.Background()
	var conn grpc.ClientConnInterface // a connection to a coordinator, with the API token
	r, err := router.New(router.Options{
		Conn:      conn,
		DC:        "dc-a1",
		Keyspaces: []string{"orders"},
		DB: func(m router.Master) (*sql.DB, error) {
			return sql.Open("mysql", "app:secret@tcp("+m.Addr+")/shop")
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = r.Run(ctx) }()
	<-r.Ready()

	db, route, err := r.WriteDB(ctx, "orders", "42")
	var notOwner *router.NotOwner
	switch {
	case errors.As(err, &notOwner):
		// Forward the write to notOwner.Owner (its master: notOwner.Master).
	case router.IsRetryable(err):
		// Frozen shard, no master yet, not ready: back off and try again.
	case err != nil:
		log.Fatal(err)
	default:
		_, err = db.ExecContext(ctx, "INSERT INTO orders (id, user_id, amount_cents) VALUES (?, ?, ?)", 1, 42, 1250)
		log.Printf("shard %d in %s: %v", route.Shard, route.Owner, err)
	}
}
