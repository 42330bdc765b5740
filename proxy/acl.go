package proxy

import (
	"fmt"

	"github.com/redis-relay/redis-relay/proxy/acl"
)

// loadUsers reads the ACL users the configuration defines: the ACL file's
// (aclfile), or the user lines'. An ACL file line that cannot be used is
// an error naming the file, the line and the reason, so that start-up
// stops there, as Redis's does.
func loadUsers(cfg Config) ([]*acl.User, error) {
	if cfg.ACLFile != "" {
		if len(cfg.Users) > 0 {
			return nil, fmt.Errorf("users are defined by user lines and by an ACL file (%s): keep one", cfg.ACLFile)
		}
		return acl.ReadFile(cfg.ACLFile)
	}
	users := make([]*acl.User, 0, len(cfg.Users))
	for _, line := range cfg.Users {
		u, err := acl.ParseUserLine(line)
		if err != nil {
			return nil, fmt.Errorf("user %s: %w", line[0], err)
		}
		users = append(users, u)
	}
	return users, nil
}
