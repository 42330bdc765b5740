// Package settings is the relay's configuration: the Config the daemon
// runs with, the table of every setting (its names, type, default, checks,
// whether CONFIG SET may change it, how CONFIG REWRITE writes it, whether
// it is a password), the value types the table reads (sizes as redis.conf
// writes them, seconds, durations, yes/no), the ACK policy, and Live, the
// configuration as CONFIG SET leaves it.
//
// The table is the only place a default is written. The config file and
// flags start from Default; a Config written in code (proxy.New with a
// zero Config, as tests do) gets the same defaults from FillDefaults for
// the fields it leaves at zero. The config file, flags, environment
// variables and CONFIG GET/SET/REWRITE all read and write settings through
// the table, so each value is parsed, checked and written back one way.
package settings
