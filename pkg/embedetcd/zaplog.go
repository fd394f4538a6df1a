package embedetcd

import (
	"slices"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapLogger returns the logger handed to the embedded server and to clients: a no-op unless debug is set,
// in which case entries go to log at their own level.
func zapLogger(log zerolog.Logger, debug bool) *zap.Logger {
	if !debug {
		return zap.NewNop()
	}
	return zap.New(zerologCore{log: log})
}

// zerologCore is a zapcore.Core writing into a zerolog.Logger.
type zerologCore struct {
	log    zerolog.Logger
	fields []zapcore.Field
}

func (c zerologCore) Enabled(l zapcore.Level) bool {
	return zerologLevel(l) >= c.log.GetLevel()
}

func (c zerologCore) With(fields []zapcore.Field) zapcore.Core {
	return zerologCore{log: c.log, fields: append(slices.Clip(c.fields), fields...)}
}

func (c zerologCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c zerologCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	ev := c.log.WithLevel(zerologLevel(e.Level))
	if e.LoggerName != "" {
		ev = ev.Str("logger", e.LoggerName)
	}
	ev.Fields(enc.Fields).Msg(e.Message)
	return nil
}

func (c zerologCore) Sync() error { return nil }

func zerologLevel(l zapcore.Level) zerolog.Level {
	switch l {
	case zapcore.DebugLevel:
		return zerolog.DebugLevel
	case zapcore.InfoLevel:
		return zerolog.InfoLevel
	case zapcore.WarnLevel:
		return zerolog.WarnLevel
	case zapcore.ErrorLevel, zapcore.DPanicLevel:
		return zerolog.ErrorLevel
	case zapcore.PanicLevel:
		return zerolog.PanicLevel
	default:
		return zerolog.FatalLevel
	}
}
