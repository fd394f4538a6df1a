// Package capture reads committed row changes from a MariaDB master's binary
// log by GTID and hands them on one whole transaction at a time.
//
// A Capturer runs go-mysql's raw BinlogSyncer (flavor mariadb) from a GTID
// position with the library's own reconnect loop turned off: the library's
// retry can deliver the last transaction twice, so a broken stream ends
// Stream with an error and the caller starts a new one, on whatever master is
// current, from its checkpoint. Events are buffered until the transaction's
// XID (or the COMMIT of a non-transactional one) arrives; a transaction cut
// off by a broken stream is discarded, never handed on.
//
// Transactions whose events carry LOG_EVENT_SKIP_REPLICATION_F (0x8000, set
// by SET SESSION skip_replication=1, which the collector uses when it applies
// other DCs' changes) are handed on with Skip set to SkipLoop and no rows, as
// are DDL statements (SkipDDL): the caller ships nothing for them but still
// moves its checkpoint past them. Rows of tables the Filter rejects are only
// counted.
//
// Column names and primary keys come from the table map events, which carry
// them only with binlog_row_metadata=FULL on the master; a wanted table
// without them fails the stream with ErrNoColumnNames. Values are converted
// to drplane.v1.Value: integers keep their signedness, DECIMAL, dates and
// times travel as their canonical text (TIMESTAMP in UTC), character columns
// as text, binary columns as raw bytes, ENUM and SET as their member names.
//
// A Follower follows the master record of one (dc, cluster) in etcd and
// signals every change, so the caller can move its stream to a new master.
package capture
