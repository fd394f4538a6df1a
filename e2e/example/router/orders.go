package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/drplane/drplane/pkg/router"
)

// errReadOnly is MySQL's ER_OPTION_PREVENTS_STATEMENT: the instance is
// read_only, which is what a master that was just replaced answers.
const errReadOnly = 1290

// writer writes orders through the router and counts what happened.
type writer struct {
	r   *router.Router
	c   config
	out io.Writer

	local   int
	elsewhr map[string]int
	retries int
}

// order writes one order of user userID, retrying refusals that clear by
// themselves (frozen shard, no master yet, a replaced master's read-only
// error) with a backoff until c.wait is spent.
func (w *writer) order(ctx context.Context, id, userID int64) error {
	key := strconv.FormatInt(userID, 10)
	deadline := time.Now().Add(w.c.wait)
	backoff := 50 * time.Millisecond
	for {
		done, err := w.try(ctx, id, userID, key)
		if done || err == nil {
			return nil
		}
		if !retryable(err) || time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("order %d (user %d): %w", id, userID, err)
		}
		w.retries++
		_, _ = fmt.Fprintf(w.out, "user %-6s retry in %s: %v\n", key, backoff, err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

// try makes one attempt; done reports a final answer other than a write
// (the shard belongs to another DC).
func (w *writer) try(ctx context.Context, id, userID int64, key string) (done bool, err error) {
	db, rt, err := w.r.WriteDB(ctx, w.c.keyspace, key)
	var no *router.NotOwner
	switch {
	case errors.As(err, &no):
		if w.elsewhr == nil {
			w.elsewhr = map[string]int{}
		}
		w.elsewhr[no.Owner]++
		master := "no master known"
		if no.Master.Known() {
			master = "master " + no.Master.Instance + " at " + no.Master.Addr
		}
		_, _ = fmt.Fprintf(w.out, "user %-6s shard %-3d owned by %s (%s): forward the write there\n", key, no.Shard, no.Owner, master)
		return true, nil
	case err != nil:
		return false, err
	}
	_, err = db.ExecContext(ctx,
		"INSERT INTO orders (id, user_id, amount_cents, note) VALUES (?, ?, ?, ?)",
		id, userID, 100+id%900, "router example from "+w.c.dc)
	if err != nil {
		return false, err
	}
	w.local++
	_, _ = fmt.Fprintf(w.out, "user %-6s shard %-3d written locally in %s: order %d on master %s at %s\n",
		key, rt.Shard, rt.Owner, id, rt.Master.Instance, rt.Master.Addr)
	return true, nil
}

// retryable reports the refusals worth retrying: the SDK's retryable
// errors, and a master that turned read-only (the routes will name its
// successor).
func retryable(err error) bool {
	var me *mysql.MySQLError
	return router.IsRetryable(err) || (errors.As(err, &me) && me.Number == errReadOnly)
}

func (w *writer) summary() {
	dcs := make([]string, 0, len(w.elsewhr))
	for dc := range w.elsewhr {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	_, _ = fmt.Fprintf(w.out, "%d orders: %d written locally in %s", w.local+sumOf(w.elsewhr), w.local, w.c.dc)
	for _, dc := range dcs {
		_, _ = fmt.Fprintf(w.out, ", %d owned by %s", w.elsewhr[dc], dc)
	}
	_, _ = fmt.Fprintf(w.out, "; %d retries\n", w.retries)
}

func sumOf(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
