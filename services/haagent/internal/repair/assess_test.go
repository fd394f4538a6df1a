package repair

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/gtid"
	"github.com/drplane/drplane/pkg/state"
)

func mustState(t *testing.T, s string) State {
	t.Helper()
	st, err := ParseState(s)
	require.NoError(t, err)
	return st
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name, own, master, errant, resume string
	}{
		{"clean", "0-1-100", "0-1-100,0-2-130", "", "0-1-100"},
		{"errant tail, master not past it", "0-1-103", "0-1-100,0-2-101", "0-1-103", "0-1-100"},
		// The new master wrote past the errant sequence numbers: a
		// comparison of positions alone would miss them.
		{"errant tail, master past it", "0-1-103", "0-1-100,0-2-130", "0-1-103", "0-1-100"},
		{"promoted then paused before its first commit replicated", "0-1-103,0-2-100", "0-2-100,0-3-130", "0-1-103", "0-2-100"},
		{"two domains", "0-1-103,1-1-7", "0-1-100,1-1-7,0-2-120", "0-1-103", "0-1-100,1-1-7"},
		{"empty", "", "0-1-5", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errant, resume := Split(mustState(t, tc.own), mustState(t, tc.master))
			assert.Equal(t, tc.errant, gtid.Pos(errant).String())
			assert.Equal(t, tc.resume, resume.String())
		})
	}
}

func TestRanges(t *testing.T) {
	resume, _ := gtid.ParsePos("0-1-100,1-2-7")
	assert.Equal(t, "0-1-101..0-1-103,1-2-8", Ranges(resume, []gtid.GTID{{Domain: 0, ServerID: 1, Seq: 103}, {Domain: 1, ServerID: 2, Seq: 8}}))
}

// deposed is the evidence of a safe repair: db1 (server 1) deposed by a
// lossless failover, three own transactions 0-1-101..103 written a second
// ago, three commits killed while waiting for an ack.
func deposed(now time.Time) Evidence {
	resume, _ := gtid.ParsePos("0-1-100")
	txn := func(seq uint64) Txn {
		return Txn{GTID: gtid.GTID{Domain: 0, ServerID: 1, Seq: seq}, At: now.Add(-time.Second), Trans: true}
	}
	return Evidence{
		Mode: ModeAuto, ServerID: 1,
		Deposed: &state.FailoverRecord{ID: "f1", Kind: state.KindFailover, Outcome: state.OutcomeSucceeded, OldMaster: "db1"},
		Errant:  []gtid.GTID{{Domain: 0, ServerID: 1, Seq: 103}}, Resume: resume,
		Others:   map[string]State{"db3": {{Domain: 0, ServerID: 1, Seq: 100}, {Domain: 0, ServerID: 2, Seq: 130}}},
		SemiSync: SemiSync{WaitNoSlave: true, Timeout: 30 * time.Second, NoTx: 3},
		Txns:     []Txn{txn(101), txn(102), txn(103)},
		Now:      now, Margin: 2 * time.Second,
	}
}

func TestJudge(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		change func(*Evidence)
		// refused is a part of the reason; "" means safe.
		refused string
	}{
		{"safe", func(*Evidence) {}, ""},
		{"repair off", func(e *Evidence) { e.Mode = ModeOff }, "repair is off"},
		{"no failover record", func(e *Evidence) { e.Deposed = nil }, "no failover record"},
		{"deposed by a switchover", func(e *Evidence) { e.Deposed.Kind = state.KindSwitchover }, "switchover"},
		{"failover failed", func(e *Evidence) { e.Deposed.Outcome = state.OutcomeFailed }, "ended FAILED"},
		{"lossy failover", func(e *Evidence) { e.Deposed.RPOTransactions, e.Deposed.LostGTIDs = 2, "0-1-102" }, "lost 2 transactions"},
		{"RPO unknown", func(e *Evidence) { e.Deposed.RPOTransactions = -1 }, "could not count"},
		{"interrupted rewind", func(e *Evidence) {
			e.Prior = &state.RepairRecord{State: state.RepairRewinding, FailoverID: "f1"}
		}, "half rewound"},
		{"rewind interrupted after an earlier failover", func(e *Evidence) {
			e.Prior = &state.RepairRecord{State: state.RepairRewinding, FailoverID: "f0"}
		}, ""},
		{"asynchronous without replicas", func(e *Evidence) { e.SemiSync.WaitNoSlave = false }, "wait_no_slave is OFF"},
		{"errant written by another server", func(e *Evidence) {
			e.Errant = append(e.Errant, gtid.GTID{Domain: 0, ServerID: 7, Seq: 90})
		}, "server id 7"},
		{"a replica received one", func(e *Evidence) {
			e.Others["db3"] = State{{Domain: 0, ServerID: 1, Seq: 101}, {Domain: 0, ServerID: 2, Seq: 130}}
		}, "db3 holds errant transaction 0-1-101"},
		{"ddl", func(e *Evidence) { e.Txns[1].DDL, e.Txns[1].Trans = true, false }, "DDL"},
		{"non-row event", func(e *Evidence) { e.Txns[2].Other = []string{"Query"} }, "Query events"},
		{"statement of several rows events", func(e *Evidence) { e.Txns[1].MultiEvent = true }, "several rows events"},
		{"foreign transaction past the fork", func(e *Evidence) { e.Txns[1].GTID.ServerID = 2 }, "server id 2"},
		{"gap", func(e *Evidence) { e.Txns = []Txn{e.Txns[0], e.Txns[2]} }, "out of sequence"},
		{"binlog ends early", func(e *Evidence) { e.Txns = e.Txns[:2] }, "ends at 0-1-102"},
		{"nothing read", func(e *Evidence) { e.Txns = nil }, "shows none"},
		{"old enough to have timed out", func(e *Evidence) { e.Txns[0].At = now.Add(-29 * time.Second) }, "acknowledged asynchronously"},
		{"not all waited for an ack", func(e *Evidence) { e.SemiSync.NoTx = 2 }, "only 2 commits waited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := deposed(now)
			tc.change(&ev)
			err := Precheck(ev)
			if err == nil {
				err = Check(ev)
			}
			if tc.refused == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrRefused), "%v", err)
			assert.Contains(t, err.Error(), tc.refused)
		})
	}
}

// sample is mariadb-binlog 10.11's -vv output past 0-1-12 (trimmed of its
// BINLOG blocks): an insert, an INSERT … ON DUPLICATE KEY UPDATE logged as
// a write and an update, and a DDL.
const sample = `/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=1*/;
DELIMITER /*!*/;
#700101  0:00:00 server id 1  end_log_pos 0 	Rotate to mysql-bin.000001  pos: 4
#261207  1:28:39 server id 1  end_log_pos 256 CRC32 0xff7fef26 	Start: binlog v 4, server v 10.11.19-MariaDB-0+deb12u1-log created 261207  1:28:39
#261207  1:28:39 server id 1  end_log_pos 285 CRC32 0x928f4d42 	Gtid list []
#261207  1:28:39 server id 1  end_log_pos 328 CRC32 0x56b2d668 	Binlog checkpoint mysql-bin.000001
#700101  0:00:00 server id 1  end_log_pos 2481 CRC32 0x07340e5a 	Gtid list [0-1-12]
#261207  1:28:39 server id 1  end_log_pos 2523 CRC32 0x1e2b7a3d 	GTID 0-1-13 trans
/*M!100001 SET @@session.gtid_seq_no=13*//*!*/;
START TRANSACTION
#261207  1:28:39 server id 1  end_log_pos 2574 CRC32 0x3aa36160 	Annotate_rows:
#Q> INSERT INTO t VALUES (2,'b')
#261207  1:28:39 server id 1  end_log_pos 2637 CRC32 0xf37405f9 	Table_map: ` + "`shop`.`t`" + ` mapped to number 22
#261207  1:28:39 server id 1  end_log_pos 2677 CRC32 0x09da71ef 	Write_rows: table id 22 flags: STMT_END_F
### INSERT INTO ` + "`shop`.`t`" + `
### SET
###   @1=2 /* INT meta=0 nullable=0 is_null=0 */
#261207  1:28:39 server id 1  end_log_pos 2708 CRC32 0x13b8173c 	Xid = 64
COMMIT/*!*/;
#261207 11:28:40 server id 1  end_log_pos 2977 CRC32 0x428507be 	GTID 0-1-14 cid=77 trans
#261207 11:28:40 server id 1  end_log_pos 3100 CRC32 0x723921a2 	Write_rows: table id 22
#261207 11:28:40 server id 1  end_log_pos 3142 CRC32 0x723921a3 	Update_rows: table id 22 flags: STMT_END_F
#261207 11:28:40 server id 1  end_log_pos 3173 CRC32 0x0a73f96a 	Xid = 75
#261207 11:28:41 server id 1  end_log_pos 3215 CRC32 0x0a73f96b 	GTID 0-1-15 ddl
#261207 11:28:41 server id 1  end_log_pos 3300 CRC32 0x0a73f96c 	Query	thread_id=9	exec_time=0	error_code=0	xid=0
DELIMITER ;
# End of log file
`

func TestParseTxns(t *testing.T) {
	txns, err := parseTxns([]byte(sample))
	require.NoError(t, err)
	require.Len(t, txns, 3)
	assert.Equal(t, Txn{GTID: gtid.GTID{Domain: 0, ServerID: 1, Seq: 13}, At: time.Date(2026, 12, 7, 1, 28, 39, 0, time.UTC), Trans: true}, txns[0])
	assert.Equal(t, Txn{GTID: gtid.GTID{Domain: 0, ServerID: 1, Seq: 14}, At: time.Date(2026, 12, 7, 11, 28, 40, 0, time.UTC), Trans: true, MultiEvent: true}, txns[1])
	assert.Equal(t, Txn{GTID: gtid.GTID{Domain: 0, ServerID: 1, Seq: 15}, At: time.Date(2026, 12, 7, 11, 28, 41, 0, time.UTC), DDL: true, Other: []string{"Query"}}, txns[2])
}
