package mysqld

import (
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"
)

func nullRow(kv map[string]string, nulls ...string) map[string]sql.NullString {
	row := map[string]sql.NullString{}
	for k, v := range kv {
		row[k] = sql.NullString{String: v, Valid: true}
	}
	for _, k := range nulls {
		row[k] = sql.NullString{}
	}
	return row
}

func TestParseReplicaStatus(t *testing.T) {
	tests := []struct {
		name    string
		row     map[string]sql.NullString
		want    ReplicaStatus
		wantErr bool
	}{
		{
			name: "running",
			row: nullRow(map[string]string{
				"Slave_IO_State": "Waiting for master to send event", "Master_Host": "127.0.0.1",
				"Master_Port": "40001", "Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes",
				"Last_IO_Errno": "0", "Last_IO_Error": "", "Last_SQL_Errno": "0", "Last_SQL_Error": "",
				"Seconds_Behind_Master": "0", "Master_Server_Id": "1", "Using_Gtid": "Slave_Pos",
				"Gtid_IO_Pos": "0-1-17", "Gtid_Slave_Pos": "0-1-17",
				"Slave_SQL_Running_State": "Slave has read all relay log; waiting for more updates",
			}),
			want: ReplicaStatus{
				Configured: true, IOState: "Yes", IORunning: true, SQLRunning: true,
				MasterHost: "127.0.0.1", MasterPort: 40001, MasterServerID: 1,
				SecondsBehindMaster: ptr(int64(0)), UsingGTID: "Slave_Pos",
				GTIDIOPos: "0-1-17", GTIDSlavePos: "0-1-17",
				SQLState: "Slave has read all relay log; waiting for more updates",
			},
		},
		{
			name: "master gone",
			row: nullRow(map[string]string{
				"Master_Host": "127.0.0.1", "Master_Port": "40001", "Slave_IO_Running": "Connecting",
				"Slave_SQL_Running": "Yes", "Last_IO_Errno": "2003",
				"Last_IO_Error":  "error reconnecting to master 'repl@127.0.0.1:40001' - retry-time: 1  maximum-retries: 100000  message: Can't connect to server on '127.0.0.1' (111 \"Connection refused\")",
				"Last_SQL_Errno": "0", "Master_Server_Id": "1", "Using_Gtid": "Slave_Pos", "Gtid_IO_Pos": "0-1-20",
			}, "Seconds_Behind_Master"),
			want: ReplicaStatus{
				Configured: true, IOState: "Connecting", SQLRunning: true,
				MasterHost: "127.0.0.1", MasterPort: 40001, MasterServerID: 1, LastIOErrno: 2003,
				LastIOError: "error reconnecting to master 'repl@127.0.0.1:40001' - retry-time: 1  maximum-retries: 100000  message: Can't connect to server on '127.0.0.1' (111 \"Connection refused\")",
				UsingGTID:   "Slave_Pos", GTIDIOPos: "0-1-20",
			},
		},
		{
			name: "sql error, columns missing",
			row: nullRow(map[string]string{
				"Slave_IO_Running": "Yes", "Slave_SQL_Running": "No", "Last_SQL_Errno": "1950",
				"Last_SQL_Error": "An attempt was made to binlog GTID 0-1-5 which would create an out-of-order sequence number",
			}),
			want: ReplicaStatus{
				Configured: true, IOState: "Yes", IORunning: true, LastSQLErrno: 1950,
				LastSQLError: "An attempt was made to binlog GTID 0-1-5 which would create an out-of-order sequence number",
			},
		},
		{
			name:    "garbage number",
			row:     nullRow(map[string]string{"Master_Port": "x"}),
			want:    ReplicaStatus{Configured: true},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseReplicaStatus(tt.row)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.want.IORunning && tt.want.SQLRunning, got.Healthy())
		})
	}
}

func TestSetSemiSyncStatus(t *testing.T) {
	val := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
	var st GTIDState
	require.NoError(t, st.setSemiSyncStatus(val("ON"), val("2"), val("OFF")))
	require.Equal(t, GTIDState{SemiSyncMasterActive: true, SemiSyncMasterClients: 2}, st)

	st = GTIDState{}
	require.NoError(t, st.setSemiSyncStatus(sql.NullString{}, sql.NullString{}, sql.NullString{}))
	require.Equal(t, GTIDState{}, st)

	require.Error(t, st.setSemiSyncStatus(sql.NullString{}, val("two"), sql.NullString{}))
}

func ptr[T any](v T) *T { return &v }
