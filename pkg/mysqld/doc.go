// Package mysqld runs real MariaDB server instances (mariadbd) on loopback and
// wires them into GTID semi-sync replication clusters.
//
// An Instance owns one data directory and one mariadbd process: Init creates the
// data directory, Start boots the server (always with read_only=1) in its own
// process group and waits until it answers, and Stop, Kill, Signal and Restart
// drive the process for failure tests and for the lab. The replication helpers
// (ChangeMaster, EnableSemiSyncMaster, ReadReplicaStatus, ReadGTIDState, …) take
// a *sql.DB so they work on any MariaDB, not only on instances started here.
// Bootstrap turns a master and its replicas into a semi-sync cluster.
package mysqld
