// Package status is the relay's state as INFO, ROLE, redis-relay status
// and the metrics read it: one plain struct, which the relay fills from
// each part's own status (the history's, the upstream link's, the
// downstream server's) at the moment it is asked. The admin commands read
// it without reaching into the relay, and package proxy names it
// proxy.Status.
package status
