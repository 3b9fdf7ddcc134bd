package scheduling

import (
	"cmp"
	"slices"
)

// Explanation is what one scheduling cycle did, for an operator asking
// why a request went where it went: per profile, each scored candidate's
// score from every scorer and the weighted total, and the endpoints the
// picker chose. The Scheduler records it only for a Request whose Explain
// is set (a debug request), so the default path records and allocates
// nothing more.
type Explanation struct {
	// Primary is the profile whose endpoints the request is sent to.
	Primary string `json:"primaryProfile"`
	// Profiles are the profiles that ran, in run order.
	Profiles []ProfileExplanation `json:"profiles"`

	scores [][]float64 // the current profile's scores, per scorer
}

// ProfileExplanation is one profile's part of an Explanation.
type ProfileExplanation struct {
	Profile string `json:"profile"`
	// Picker is the picker's name (type); Picked the endpoints it chose,
	// the primary first.
	Picker string   `json:"picker"`
	Picked []string `json:"picked"`
	// Scorers are the profile's scorers that ran (weight > 0), in order;
	// Candidates the endpoints left after the filters, each with its
	// scores in the same order.
	Scorers    []ScorerWeight         `json:"scorers"`
	Candidates []CandidateExplanation `json:"candidates"`
}

// ScorerWeight names a scorer ("name (type)") and its weight.
type ScorerWeight struct {
	Scorer string  `json:"scorer"`
	Weight float64 `json:"weight"`
}

// CandidateExplanation is one candidate's scores: Scores[i] is the
// profile's Scorers[i]'s score in [0, 1] (before its weight), Total the
// weighted sum the picker chose by.
type CandidateExplanation struct {
	Endpoint string    `json:"endpoint"`
	Scores   []float64 `json:"scores"`
	Total    float64   `json:"total"`
}

// Top keeps the n candidates of each profile with the highest totals
// (picked ones first), so an explanation of a large pool stays small
// enough for a response header.
func (e *Explanation) Top(n int) {
	for i := range e.Profiles {
		p := &e.Profiles[i]
		picked := func(c CandidateExplanation) bool { return slices.Contains(p.Picked, c.Endpoint) }
		slices.SortStableFunc(p.Candidates, func(a, b CandidateExplanation) int {
			if pa, pb := picked(a), picked(b); pa != pb {
				if pa {
					return -1
				}
				return 1
			}
			return cmp.Compare(b.Total, a.Total)
		})
		if len(p.Candidates) > n {
			p.Candidates = p.Candidates[:n]
		}
	}
}

// explainProfile records one profile's run in req.Explain: the scorers,
// the candidates left after the filters with their totals, and the picks.
func explainProfile(req *Request, p *Profile, work []Candidate, total []float64, picked []int) {
	pe := ProfileExplanation{Profile: p.name, Picker: p.picker.TypedName().String()}
	for _, ws := range p.scorers {
		if ws.Weight != 0 {
			pe.Scorers = append(pe.Scorers, ScorerWeight{Scorer: ws.Scorer.TypedName().String(), Weight: ws.Weight})
		}
	}
	scores := req.Explain.scores
	for i := range work {
		c := CandidateExplanation{Endpoint: work[i].Endpoint.Address, Total: total[i], Scores: make([]float64, len(pe.Scorers))}
		for j := range pe.Scorers {
			if j < len(scores) && i < len(scores[j]) {
				c.Scores[j] = scores[j][i]
			}
		}
		pe.Candidates = append(pe.Candidates, c)
	}
	for _, i := range picked {
		pe.Picked = append(pe.Picked, work[i].Endpoint.Address)
	}
	req.Explain.Profiles = append(req.Explain.Profiles, pe)
	req.Explain.scores = req.Explain.scores[:0]
}
