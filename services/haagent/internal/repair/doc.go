// Package repair brings a deposed master back into its cluster as a
// replica, by itself, when that is safe.
//
// A master that was paused (or cut off) and failed over comes back with
// the transactions it had written to its binlog and was waiting to have
// acknowledged by a semi-sync replica when it stopped: the fence kills the
// waiting sessions (their clients get an error, never an OK) and the
// transactions commit locally. They are errant: the new master never had
// them, and the old master cannot replicate from it while it holds them.
//
// Such transactions were never acknowledged to a client, so they can be
// discarded — but only when that can be shown. Judge (pure, table-tested)
// refuses unless every one of these holds:
//
//   - repair is on (mode auto);
//   - the last failover that names the instance as its old master is an
//     automatic failover that SUCCEEDED and lost nothing (RPO 0): the new
//     master had everything any candidate had received;
//   - every errant transaction was written by the instance itself, after
//     the point where its binlog and the master's part, and no other
//     instance of the cluster holds any of them (a replica that received
//     one may have acknowledged it);
//   - the instance ran lossless semi-sync (wait_no_slave ON) and counts at
//     least as many commits that waited in vain for an ack
//     (Rpl_semi_sync_master_no_tx) as there are errant transactions;
//   - each errant transaction is transactional row-based DML (flashback
//     cannot undo DDL) with one rows event per statement (flashback undoes
//     only the last rows event of a statement), and the earliest began less than the instance's
//     rpl_semi_sync_master_timeout (less a clock margin) before the
//     repair fenced it: none can have waited the timeout out and been
//     acknowledged asynchronously;
//   - no earlier repair of the instance was interrupted half way.
//
// When it holds, a Repairer saves the errant transactions' row images (the
// output of mariadb-binlog -vv: re-appliable BINLOG statements with the
// decoded rows as comments) to a file, marks the repair REWINDING in etcd,
// undoes them with mariadb-binlog --flashback applied without binary
// logging, resets the instance's binlog, sets gtid_slave_pos to the fork
// point and makes it a semi-sync replica of the master. When it does not,
// the caller quarantines the instance with the reason. An instance with
// nothing errant is simply rejoined (current_pos).
package repair
