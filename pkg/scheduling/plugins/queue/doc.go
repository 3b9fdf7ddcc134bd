// Package queue is the queue-scorer plugin: it prefers the endpoints with
// the shortest waiting queue, because a request that waits in a model
// server's queue pays that wait directly in time to first token.
//
// Type name: queue-scorer (a Scorer).
//
// Score: with q the queue length of each candidate, the score is
// (max−q)/(max−min) over the candidates of the cycle, so the shortest queue
// scores 1 and the longest 0; when all queues are equal every candidate
// scores 1.
//
// q is the scraped waiting queue (vllm:num_requests_waiting and its
// equivalents) plus igw's correction for requests the scrape cannot know
// about yet: scrapes arrive every ~50 ms, and a burst routed between two
// scrapes would otherwise all go to the endpoint that looked idle. igw
// counts its own in-flight requests per endpoint; whatever exceeds what
// the server reported (waiting + running) was sent after the scrape and is
// counted as queued:
//
//	q = waiting + max(0, inFlight − (waiting + running))
//
// When the scrape is fresh and all traffic goes through this igw the
// correction is ~0; when other gateways share the endpoints the server
// reports more than igw's in-flight count and the correction is 0, so it
// never double counts.
//
// Parameters:
//
//	useInFlight  bool  default true   add the in-flight correction above;
//	                                  false scores the scraped queue only.
//
// Example:
//
//	plugins:
//	- type: queue-scorer
//	  parameters: {useInFlight: true}
//	schedulingProfiles:
//	- name: default
//	  plugins:
//	  - pluginRef: queue-scorer
//	    weight: 2
package queue
