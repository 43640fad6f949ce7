//! Bucket counters over the span of bucket indexes a histogram has seen.
//!
//! One counter per index from the lowest to the highest index seen (plus up to an eighth of
//! slack on the side that grew), so memory follows the spread of the values, not the range
//! the layout could hold. Counters start one byte wide and widen to 2, 4 and 8 bytes, all
//! together, the first time one would overflow: a latency series spanning three decades at
//! 512 buckets per octave holds 5 102 counters, 5 KiB while no bucket passed 255.

/// Counters of one width.
#[derive(Clone, Debug)]
enum Counts {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
}

macro_rules! each {
    ($counts:expr, $v:ident => $body:expr) => {
        match $counts {
            Counts::U8($v) => $body,
            Counts::U16($v) => $body,
            Counts::U32($v) => $body,
            Counts::U64($v) => $body,
        }
    };
}

/// Counters for bucket indexes `offset .. offset + len`.
#[derive(Clone, Debug)]
pub(crate) struct Dense {
    offset: u32,
    counts: Counts,
    /// Sum of all counters (saturating).
    total: u64,
}

impl Default for Dense {
    fn default() -> Self {
        Dense {
            offset: 0,
            counts: Counts::U8(Vec::new()),
            total: 0,
        }
    }
}

impl PartialEq for Dense {
    /// Equal when the same buckets hold the same counts, whatever the widths and spans.
    fn eq(&self, other: &Self) -> bool {
        self.total == other.total && self.iter().eq(other.iter())
    }
}

impl Dense {
    /// Counters held (the span from the lowest to the highest bucket seen, and slack).
    pub(crate) fn len(&self) -> usize {
        each!(&self.counts, v => v.len())
    }

    /// Observations in all buckets.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    fn get(&self, i: usize) -> u64 {
        match &self.counts {
            Counts::U8(v) => u64::from(v[i]),
            Counts::U16(v) => u64::from(v[i]),
            Counts::U32(v) => u64::from(v[i]),
            Counts::U64(v) => v[i],
        }
    }

    /// Bytes of counters allocated.
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.counts {
            Counts::U8(v) => v.capacity(),
            Counts::U16(v) => v.capacity() * 2,
            Counts::U32(v) => v.capacity() * 4,
            Counts::U64(v) => v.capacity() * 8,
        }
    }

    /// Makes `lo..=hi` addressable (indexes at most `max_index`).
    fn cover(&mut self, lo: u32, hi: u32, max_index: u32) {
        let len = self.len() as u32;
        if len == 0 {
            self.offset = lo;
            let n = (hi - lo + 1) as usize;
            each!(&mut self.counts, v => v.resize(n, 0));
            return;
        }
        let end = self.offset + len; // exclusive
        if lo < self.offset {
            let slack = (len / 8).max(8);
            let new_offset = lo.saturating_sub(slack);
            let shift = (self.offset - new_offset) as usize;
            each!(&mut self.counts, v => {
                let mut grown = vec![0; shift + v.len()];
                grown[shift..].copy_from_slice(v);
                *v = grown;
            });
            self.offset = new_offset;
        }
        if hi >= end {
            let slack = (len / 8).max(8);
            let new_end = (hi + 1 + slack).min(max_index + 1).max(hi + 1);
            let n = (new_end - self.offset) as usize;
            each!(&mut self.counts, v => {
                v.reserve_exact(n - v.len());
                v.resize(n, 0);
            });
        }
    }

    /// Counters for `lo..=hi`, as wide as `largest` needs, holding `counts`: `(index, count)`
    /// pairs, ascending, inside the span, none above `largest`, their total fitting a `u64`
    /// (what decoding checked). The counters are written in place, with one width dispatch for
    /// them all.
    pub(crate) fn from_ascending(
        lo: u32,
        hi: u32,
        largest: u64,
        counts: impl Iterator<Item = (u32, u64)>,
    ) -> Dense {
        let n = (hi - lo + 1) as usize;
        let mut total: u64 = 0;
        macro_rules! fill {
            ($t:ty, $variant:ident) => {{
                let mut v: Vec<$t> = vec![0; n];
                for (i, c) in counts {
                    total = total.saturating_add(c);
                    // At most `largest`, which fits `$t`.
                    v[(i - lo) as usize] = c as $t;
                }
                Counts::$variant(v)
            }};
        }
        let counts = if largest > u64::from(u32::MAX) {
            fill!(u64, U64)
        } else if largest > u64::from(u16::MAX) {
            fill!(u32, U32)
        } else if largest > u64::from(u8::MAX) {
            fill!(u16, U16)
        } else {
            fill!(u8, U8)
        };
        Dense {
            offset: lo,
            counts,
            total,
        }
    }

    /// Adds `counts`, `(index, count)` pairs inside `lo..=hi` (any order) whose counts sum to
    /// `total`, without building them into counters first; false, with `self` unchanged, when
    /// the two totals together pass `u64::MAX` (callers check the histograms' counts first).
    pub(crate) fn add_pairs(
        &mut self,
        lo: u32,
        hi: u32,
        total: u64,
        counts: impl Iterator<Item = (u32, u64)>,
        max_index: u32,
    ) -> bool {
        let Some(sum) = self.total.checked_add(total) else {
            return false;
        };
        self.cover(lo, hi, max_index);
        // No counter exceeds the sum of the totals, so once that fits the width, the adds
        // need no check (as in `merge`'s fast path).
        while sum > self.width_max() {
            self.widen();
        }
        let offset = self.offset;
        macro_rules! add_each {
            ($v:expr, $t:ty) => {
                for (i, c) in counts {
                    // At most `sum`, which fits `$t`.
                    $v[(i - offset) as usize] += c as $t;
                }
            };
        }
        match &mut self.counts {
            Counts::U8(v) => add_each!(v, u8),
            Counts::U16(v) => add_each!(v, u16),
            Counts::U32(v) => add_each!(v, u32),
            Counts::U64(v) => add_each!(v, u64),
        }
        self.total = sum;
        true
    }

    /// Widens every counter to the next width.
    fn widen(&mut self) {
        self.counts = match &self.counts {
            Counts::U8(v) => Counts::U16(v.iter().map(|c| u16::from(*c)).collect()),
            Counts::U16(v) => Counts::U32(v.iter().map(|c| u32::from(*c)).collect()),
            Counts::U32(v) => Counts::U64(v.iter().map(|c| u64::from(*c)).collect()),
            Counts::U64(v) => Counts::U64(v.clone()),
        };
    }

    /// Adds `n` to bucket `index`; false when a counter would pass `u64::MAX`.
    #[inline]
    pub(crate) fn add(&mut self, index: u32, n: u64, max_index: u32) -> bool {
        let len = self.len() as u32;
        if index < self.offset || index >= self.offset + len {
            self.cover(index, index, max_index);
        }
        let i = (index - self.offset) as usize;
        self.add_at(i, n)
    }

    /// Adds `n` to the counter at position `i` (covered), widening as needed.
    #[inline]
    fn add_at(&mut self, i: usize, n: u64) -> bool {
        loop {
            let done = match &mut self.counts {
                Counts::U8(v) => bump(&mut v[i], n),
                Counts::U16(v) => bump(&mut v[i], n),
                Counts::U32(v) => bump(&mut v[i], n),
                Counts::U64(v) => match v[i].checked_add(n) {
                    Some(s) => {
                        v[i] = s;
                        true
                    }
                    None => return false,
                },
            };
            if done {
                self.total = self.total.saturating_add(n);
                return true;
            }
            self.widen();
        }
    }

    /// Adds every bucket of `other`; false when a counter would overflow (nothing is then
    /// guaranteed about `self`, so callers merge into a copy).
    pub(crate) fn merge(&mut self, other: &Dense, max_index: u32) -> bool {
        let Some((lo, hi)) = other.span() else {
            return true;
        };
        self.cover(lo, hi, max_index);
        // Other's non-empty span, as positions in other and in self.
        let (from, to) = ((lo - other.offset) as usize, (hi - other.offset) as usize);
        let base = (lo - self.offset) as usize;
        // Fast path: when the two totals fit self's counter width, no counter can overflow
        // (each is at most the total), so the spans add element-wise without a check or a
        // width dispatch per counter (the loops vectorise). Merging histograms is most of a
        // report's time.
        if let Some(total) = self.total.checked_add(other.total) {
            while total > self.width_max() {
                self.widen();
            }
            let n = to - from + 1;
            macro_rules! add_span {
                ($d:expr, $t:ty) => {
                    match &other.counts {
                        Counts::U8(s) => add_slice($d, &s[from..=to], |c| c as $t),
                        Counts::U16(s) => add_slice($d, &s[from..=to], |c| c as $t),
                        Counts::U32(s) => add_slice($d, &s[from..=to], |c| c as $t),
                        Counts::U64(s) => add_slice($d, &s[from..=to], |c| c as $t),
                    }
                };
            }
            // The casts narrow only counters that are at most `total`, which fits `$t`.
            match &mut self.counts {
                Counts::U8(d) => add_span!(&mut d[base..base + n], u8),
                Counts::U16(d) => add_span!(&mut d[base..base + n], u16),
                Counts::U32(d) => add_span!(&mut d[base..base + n], u32),
                Counts::U64(d) => add_span!(&mut d[base..base + n], u64),
            }
            self.total = total;
            return true;
        }
        macro_rules! add_all {
            ($v:expr) => {
                for (j, c) in $v[from..=to].iter().enumerate() {
                    if *c != 0 && !self.add_at(base + j, u64::from(*c)) {
                        return false;
                    }
                }
            };
        }
        match &other.counts {
            Counts::U8(v) => add_all!(v),
            Counts::U16(v) => add_all!(v),
            Counts::U32(v) => add_all!(v),
            Counts::U64(v) => {
                for (j, c) in v[from..=to].iter().enumerate() {
                    if *c != 0 && !self.add_at(base + j, *c) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Lowest and highest non-empty index (scanning in from both ends: only the slack).
    fn span(&self) -> Option<(u32, u32)> {
        let (first, last) = each!(&self.counts, v => {
            let first = v.iter().position(|c| *c != 0)?;
            let last = v.iter().rposition(|c| *c != 0).unwrap_or(first);
            (first, last)
        });
        Some((self.offset + first as u32, self.offset + last as u32))
    }

    /// The largest count the current counter width holds.
    fn width_max(&self) -> u64 {
        match &self.counts {
            Counts::U8(_) => u64::from(u8::MAX),
            Counts::U16(_) => u64::from(u16::MAX),
            Counts::U32(_) => u64::from(u32::MAX),
            Counts::U64(_) => u64::MAX,
        }
    }

    /// Calls `f(index, count)` for each non-empty bucket, ascending. The same as [`Self::iter`],
    /// with the width dispatched once and the counters taken 16 at a time: a run's non-empty
    /// ones become a bit mask (compare and pack, no branch per counter), and only its set bits
    /// are visited. Values are sparse over their span (100 latencies over ~2 000 counters), so
    /// a counter-by-counter walk was mostly mispredicted branches, and encoding every merged
    /// histogram walked them (perf, the many-agents bench).
    // `u64::from` is the identity in the `u64` arm of the width dispatch.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn for_each_nonzero(&self, mut f: impl FnMut(u32, u64)) {
        const RUN: usize = 16;
        let offset = self.offset;
        each!(&self.counts, v => {
            let mut base = offset;
            let mut runs = v.chunks_exact(RUN);
            for run in &mut runs {
                let mut mask = 0u32;
                for (i, c) in run.iter().enumerate() {
                    mask |= u32::from(*c != 0) << i;
                }
                while mask != 0 {
                    let i = mask.trailing_zeros();
                    f(base + i, u64::from(run[i as usize]));
                    mask &= mask - 1;
                }
                base += RUN as u32;
            }
            for (i, c) in runs.remainder().iter().enumerate() {
                if *c != 0 {
                    f(base + i as u32, u64::from(*c));
                }
            }
        });
    }

    /// Observations in the buckets with indexes below `end`.
    // `u64::from` is the identity in the `u64` arm of the width dispatch.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn sum_below(&self, end: u32) -> u64 {
        let n = end.saturating_sub(self.offset) as usize;
        each!(&self.counts, v => v[..n.min(v.len())].iter().map(|c| u64::from(*c)).sum())
    }

    /// How many buckets are not empty.
    pub(crate) fn nonzero(&self) -> usize {
        let mut n = 0;
        self.for_each_nonzero(|_, _| n += 1);
        n
    }

    /// Non-empty buckets, ascending: `(index, count)`.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (u32, u64)> + '_ {
        (0..self.len()).filter_map(move |i| {
            let c = self.get(i);
            (c > 0).then_some((self.offset + i as u32, c))
        })
    }
}

/// `dst[i] += conv(src[i])`, where the caller knows no sum overflows.
#[inline]
fn add_slice<D, S>(dst: &mut [D], src: &[S], conv: impl Fn(S) -> D)
where
    D: Copy + std::ops::AddAssign,
    S: Copy,
{
    for (d, s) in dst.iter_mut().zip(src) {
        *d += conv(*s);
    }
}

/// Adds `n` to a narrow counter; false when it would not fit.
#[inline]
fn bump<T>(c: &mut T, n: u64) -> bool
where
    T: Copy + TryFrom<u64> + num_like::CheckedAdd,
{
    match T::try_from(n) {
        Ok(n) => match c.checked_add_(n) {
            Some(s) => {
                *c = s;
                true
            }
            None => false,
        },
        Err(_) => false,
    }
}

mod num_like {
    /// `checked_add` of the narrow counter types.
    pub(crate) trait CheckedAdd: Sized {
        fn checked_add_(self, n: Self) -> Option<Self>;
    }
    macro_rules! imp {
        ($($t:ty),*) => {$(
            impl CheckedAdd for $t {
                #[inline]
                fn checked_add_(self, n: Self) -> Option<Self> {
                    self.checked_add(n)
                }
            }
        )*};
    }
    imp!(u8, u16, u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_widen_and_spans_grow_both_ways() {
        let mut d = Dense::default();
        assert!(d.add(100, 1, 1000));
        assert!(d.add(50, 2, 1000));
        assert!(d.add(900, 300, 1000));
        assert!(d.add(900, 70_000, 1000));
        assert!(d.add(100, 5_000_000_000, 1000));
        let got: Vec<_> = d.iter().collect();
        assert_eq!(got, vec![(50, 2), (100, 5_000_000_001), (900, 70_300)]);
        assert_eq!(d.total(), 5_000_070_303);
        assert!(!d.add(100, u64::MAX, 1000));
    }

    #[test]
    fn equality_ignores_width_and_span() {
        let mut a = Dense::default();
        let mut b = Dense::default();
        a.add(10, 1, 100);
        a.add(20, 300, 100);
        b.add(20, 300, 100);
        b.add(10, 1, 100);
        b.add(5, 0, 100);
        assert_eq!(a, b);
        let mut c = Dense::default();
        assert!(c.merge(&a, 100));
        assert_eq!(c, a);
    }

    #[test]
    fn merges_widen_narrow_and_refuse_overflow_as_adds_do() {
        // Each case: (self's adds, other's adds); the merge must equal adding one by one.
        type Adds = Vec<(u32, u64)>;
        let cases: Vec<(Adds, Adds)> = vec![
            // Both one byte wide, the sum needs two.
            (vec![(10, 200), (12, 1)], vec![(10, 100), (30, 5)]),
            // Other stored four bytes wide (once large, the counts are small again elsewhere)
            // into a one-byte self, spans on both sides of self's.
            (vec![(50, 3)], vec![(5, 70_000), (90, 2)]),
            // Self already wide, other narrow, other inside self's span.
            (vec![(1, 5_000_000_000), (100, 1)], vec![(40, 7)]),
        ];
        for (mine, theirs) in cases {
            let (mut a, mut b, mut want) = (Dense::default(), Dense::default(), Dense::default());
            for (i, n) in &mine {
                assert!(a.add(*i, *n, 1000));
                assert!(want.add(*i, *n, 1000));
            }
            for (i, n) in &theirs {
                assert!(b.add(*i, *n, 1000));
                assert!(want.add(*i, *n, 1000));
            }
            assert!(a.merge(&b, 1000));
            assert_eq!(a, want);
            assert_eq!(a.total(), want.total());
        }
        // Totals past u64::MAX take the checked path, which refuses the overflowing counter.
        let (mut a, mut b) = (Dense::default(), Dense::default());
        assert!(a.add(3, u64::MAX - 1, 1000));
        assert!(b.add(3, 2, 1000));
        assert!(!a.merge(&b, 1000));
        // But not a sum that saturates the total only while each counter still fits.
        let (mut a, mut b) = (Dense::default(), Dense::default());
        assert!(a.add(3, u64::MAX - 1, 1000));
        assert!(b.add(4, 2, 1000));
        assert!(a.merge(&b, 1000));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![(3, u64::MAX - 1), (4, 2)]
        );
    }

    #[test]
    fn memory_follows_the_spread() {
        let mut d = Dense::default();
        for i in 0..5_102 {
            d.add(10_000 + i, 1, 40_960);
        }
        // One byte per counter, plus at most an eighth of slack.
        assert!(
            d.heap_bytes() <= 5_102 + 5_102 / 8 + 8,
            "{}",
            d.heap_bytes()
        );
    }
}
