// Package plugins assembles igw's built-in scheduling plugins: NewRegistry
// returns a scheduling.Registry with every built-in type registered, which
// is what the gateway and the picker use to build a Scheduler from an
// EndpointPickerConfig. Each plugin lives in its own sub-package, whose
// package comment is its manual:
//
//	queue-scorer                  plugins/queue
//	kv-cache-utilization-scorer   plugins/kvcache
//	prefix-cache-scorer           plugins/prefix
//	precise-prefix-cache-scorer   plugins/preciseprefix
//	lora-affinity-scorer          plugins/lora
//	running-requests-size-scorer  plugins/running
//	least-request                 plugins/leastrequest
//	label-selector-filter         plugins/labelselector
//	max-score-picker              plugins/maxscore
//	random-picker                 plugins/random
//	weighted-random-picker        plugins/weightedrandom
//	round-robin-picker            plugins/roundrobin
//	single-profile-handler        plugins/singleprofile
package plugins
