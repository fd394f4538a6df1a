package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/drplane/drplane/pkg/apiclient"
	"github.com/drplane/drplane/pkg/labfile"
	"github.com/drplane/drplane/pkg/router"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	lab, api, token, dc, keyspace string
	orders                        int
	firstUser, firstID            int64
	wait                          time.Duration
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.lab, "lab", "", "lab directory or lab.json written by drlab up (endpoint, token, app credentials)")
	fs.StringVar(&c.api, "api", "", "coordinator gRPC host:port (default: from DRPLANE_API or the lab)")
	fs.StringVar(&c.token, "token", "", "API bearer token (default: from DRPLANE_TOKEN or the lab)")
	fs.StringVar(&c.dc, "dc", "", "the DC this program runs in (required)")
	fs.StringVar(&c.keyspace, "keyspace", "orders", "keyspace to write")
	fs.IntVar(&c.orders, "n", 20, "number of orders to write")
	fs.Int64Var(&c.firstUser, "first-user", 1, "user id of the first order; the next orders take the following ids")
	fs.Int64Var(&c.firstID, "first-id", 0, "order id of the first order (default: derived from the clock)")
	fs.DurationVar(&c.wait, "wait", 30*time.Second, "how long to wait for routes and for a retryable refusal to clear")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case c.lab == "":
		return c, errors.New("--lab is required (it holds the app credentials)")
	case c.dc == "":
		return c, errors.New("--dc is required")
	case c.orders < 1:
		return c, errors.New("-n must be at least 1")
	}
	if c.firstID == 0 {
		c.firstID = time.Now().UnixMicro()
	}
	return c, nil
}

// run is the program; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "router:", err)
		return 2
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}).With().Timestamp().Logger().Level(zerolog.WarnLevel)
	if err := write(ctx, c, stdout, log); err != nil {
		_, _ = fmt.Fprintln(stderr, "router:", err)
		return 1
	}
	return 0
}

// write sets up the SDK and writes the orders.
func write(ctx context.Context, c config, stdout io.Writer, log zerolog.Logger) error {
	lab, err := labfile.Read(labfile.Path(c.lab))
	if err != nil {
		return err
	}
	dc, ok := lab.DC(c.dc)
	if !ok {
		return fmt.Errorf("DC %q is not in the lab", c.dc)
	}
	database := ""
	for _, ks := range lab.Keyspaces {
		if ks.Name == c.keyspace {
			database = ks.Database
		}
	}
	if database == "" {
		return fmt.Errorf("keyspace %q is not in the lab", c.keyspace)
	}
	api, err := apiclient.Resolve(apiclient.Flags{API: c.api, Token: c.token, Lab: c.lab})
	if err != nil {
		return err
	}
	conn, err := dial(api)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()

	r, err := router.New(router.Options{
		Conn:      conn,
		DC:        c.dc,
		Keyspaces: []string{c.keyspace},
		DB: func(m router.Master) (*sql.DB, error) {
			cfg := mysql.NewConfig()
			cfg.User, cfg.Passwd, cfg.DBName = dc.AppUser, dc.AppPassword, database
			cfg.Net, cfg.Addr = "tcp", m.Addr
			cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 10*time.Second, 10*time.Second
			return sql.Open("mysql", cfg.FormatDSN())
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	select {
	case <-r.Ready():
	case <-time.After(c.wait):
		return fmt.Errorf("no routes for %q from %s after %s", c.keyspace, api.Addr, c.wait)
	case <-ctx.Done():
		return ctx.Err()
	}
	w := &writer{r: r, c: c, out: stdout}
	for i := range c.orders {
		if err := w.order(ctx, c.firstID+int64(i), c.firstUser+int64(i)); err != nil {
			return err
		}
	}
	w.summary()
	return nil
}

// dial connects to the API the way apiclient does: TLS when configured, the
// bearer token on every call.
func dial(o apiclient.Options) (*grpc.ClientConn, error) {
	tc := insecure.NewCredentials()
	if o.TLS != nil {
		tc = credentials.NewTLS(o.TLS)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(tc)}
	if o.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(o.Token)))
	}
	conn, err := grpc.NewClient(o.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", o.Addr, err)
	}
	return conn, nil
}

// bearer sends the API token.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
