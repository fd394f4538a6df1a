package repair

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/mysqld"
)

// ErrTool means mariadb-binlog or the mariadb client failed or is missing.
var ErrTool = errors.New("repair: tool")

// maxOutput bounds what a tool may print: the errant tail of a deposed
// master is a handful of transactions, not a binlog.
const maxOutput = 64 << 20

// tools runs mariadb-binlog and the mariadb client against one server, as
// the agent's account. The password goes in the environment (MYSQL_PWD),
// never on the command line; nothing else of the agent's environment is
// passed on.
type tools struct {
	binlog, client string
	user, password string
}

func (t tools) env() []string {
	env := []string{"TZ=UTC", "LC_ALL=C", "MYSQL_PWD=" + t.password}
	if p, ok := os.LookupEnv("PATH"); ok {
		env = append(env, "PATH="+p)
	}
	return env
}

// conn returns the connection options for addr.
func (t tools) conn(addr string) ([]string, error) {
	host, port, err := mysqld.SplitAddr(addr)
	if err != nil {
		return nil, err
	}
	return []string{"--host=" + host, "--port=" + strconv.Itoa(port), "--user=" + t.user}, nil
}

// check reports a missing tool.
func (t tools) check() error {
	for _, b := range []string{t.binlog, t.client} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%w: %s not found: %w", ErrTool, b, err)
		}
	}
	return nil
}

// read prints addr's binlog past from (a GTID position, exclusive), reading
// it through the replication protocol from firstLog to the last log, with
// the extra options (-vv for the row images, --flashback for the undo).
func (t tools) read(ctx context.Context, addr string, from gtid.Pos, firstLog string, extra ...string) ([]byte, error) {
	args, err := t.conn(addr)
	if err != nil {
		return nil, err
	}
	args = append(args, "--read-from-remote-server", "--to-last-log", "--start-position="+from.String())
	args = append(args, extra...)
	args = append(args, firstLog)
	return t.run(ctx, t.binlog, args, nil)
}

// apply runs sql through the mariadb client on addr.
func (t tools) apply(ctx context.Context, addr string, sql []byte) error {
	args, err := t.conn(addr)
	if err != nil {
		return err
	}
	_, err = t.run(ctx, t.client, append(args, "--batch", "--skip-column-names"), sql)
	return err
}

func (t tools) run(ctx context.Context, bin string, args []string, stdin []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = t.env()
	cmd.WaitDelay = time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut capped
	out.max, errOut.max = maxOutput, 4096
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w: %s", ErrTool, bin, err, strings.TrimSpace(errOut.String()))
	}
	if out.over {
		return nil, fmt.Errorf("%w: %s printed more than %d bytes", ErrTool, bin, maxOutput)
	}
	return out.Bytes(), nil
}

// capped is a buffer that keeps at most max bytes.
type capped struct {
	bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); len(p) > room {
		c.over = true
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

// header matches an event header line of mariadb-binlog's output:
// "#261207  1:28:39 server id 1  end_log_pos 2750 CRC32 0x0f37ad0a \tGTID 0-1-14 trans".
var header = regexp.MustCompile(`^#(\d{6})\s+(\d{1,2}:\d{2}:\d{2})\s+server id\s+(\d+)\s+end_log_pos\s+\d+(?:\s+CRC32\s+0x[0-9a-fA-F]+)?\s+(.*)$`)

// rowEvent reports the events an undoable transaction may hold besides its
// GTID and Xid.
func rowEvent(kind string) bool {
	for _, p := range []string{"Annotate_rows", "Table_map", "Write_rows", "Update_rows", "Delete_rows"} {
		if strings.HasPrefix(kind, p) {
			return true
		}
	}
	return false
}

// parseTxns reads the transactions from mariadb-binlog's output (run with
// TZ=UTC): each GTID event opens one, its Xid closes it.
func parseTxns(out []byte) ([]Txn, error) {
	var txns []Txn
	var cur *Txn
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		m := header.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		rest := strings.TrimSpace(m[4])
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		kind := strings.TrimSuffix(f[0], ":")
		f = f[1:]
		switch {
		case kind == "GTID":
			if len(f) == 0 {
				return nil, fmt.Errorf("%w: GTID event without a GTID: %q", ErrTool, rest)
			}
			g, err := gtid.Parse(f[0])
			if err != nil {
				return nil, fmt.Errorf("%w: %q: %w", ErrTool, rest, err)
			}
			at, err := time.Parse("060102 15:04:05", m[1]+" "+pad(m[2]))
			if err != nil {
				return nil, fmt.Errorf("%w: timestamp of %q: %w", ErrTool, rest, err)
			}
			t := Txn{GTID: g, At: at}
			for _, w := range f[1:] {
				t.Trans = t.Trans || w == "trans"
				t.DDL = t.DDL || w == "ddl"
			}
			txns = append(txns, t)
			cur = &txns[len(txns)-1]
		case cur == nil:
			// Between transactions: rotate, format description, GTID
			// list, binlog checkpoint.
		case kind == "Xid":
			cur = nil
		case !rowEvent(kind):
			cur.Other = append(cur.Other, kind)
		case kind != "Annotate_rows" && kind != "Table_map" && !strings.Contains(rest, "STMT_END_F"):
			// A statement's rows events but the last lack the flag.
			cur.MultiEvent = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: read mariadb-binlog output: %w", ErrTool, err)
	}
	return txns, nil
}

// pad zero-pads an hour printed with one digit ("1:28:39").
func pad(clock string) string {
	if len(clock) == len("1:28:39") {
		return "0" + clock
	}
	return clock
}
