package scheduling

// InverseMinMax turns raw load values (queue lengths, running or in-flight
// requests; stored in scores) into 0..1 scores in place, so that the least
// loaded candidate scores 1 and the most loaded 0: (max−v)/(max−min). When
// every value is equal, every score is 1 — no candidate is worse than
// another. Shared by the load scorers so they normalize identically.
func InverseMinMax(scores []float64) {
	if len(scores) == 0 {
		return
	}
	lo, hi := scores[0], scores[0]
	for _, v := range scores[1:] {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	if hi == lo {
		for i := range scores {
			scores[i] = 1
		}
		return
	}
	span := hi - lo
	for i, v := range scores {
		scores[i] = (hi - v) / span
	}
}
