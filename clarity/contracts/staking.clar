;; staking: FAI staked by verifiers, locked for whole reward cycles, and the verifier set.
;;
;; A reward cycle is `cycle-length` ledger blocks (burn-block-height). A stake made during
;; cycle c is locked until the start of cycle c + 1 + cycles. The verifier set of a cycle is
;; the five largest stakes when the cycle begins: the consensus calls `begin-cycle` in the
;; first inference block of each cycle, which records the current leaders. Ranking: larger
;; amount first, then the earlier stake (the ledger height of the first deposit), then the
;; smaller principal hash. At most 100 stakers: when every slot is taken, a newcomer whose
;; stake is larger than the last-ranked staker's takes its slot, and that stake is refunded.
;;
;; Audits (docs/decisions/0004-verifier-accountability.md): anyone may commit to an audit
;; (sha256d of a salt and the txid of a forgery it will have served) with `commit-audit`;
;; once the audited block is settled, the consensus checks the reveal and calls
;; `slash-verifiers` with the verifiers whose votes accepted the forgery while more than
;; half the signers rejected it grossly: each loses a tenth of its stake, half to the
;; revealer, half burnt, once per audit, and is barred from the verifier sets for good
;; (it is ranked no more; it may still unstake once its lock and its last set allow).
;;
;; Functions that only the consensus may call check that tx-sender is the boot principal,
;; which deployed this contract and has no private key.

(define-constant CONSENSUS tx-sender)
(define-constant MAX-LOCK-CYCLES u12)
(define-constant MAX-STAKERS u100)
(define-constant SET-SIZE u5)

(define-constant ERR-NOT-CONSENSUS (err u1))
(define-constant ERR-ZERO-AMOUNT (err u2))
(define-constant ERR-BAD-CYCLES (err u3))
(define-constant ERR-INSUFFICIENT-FUNDS (err u4))
(define-constant ERR-NO-STAKE (err u5))
(define-constant ERR-LOCKED (err u6))
(define-constant ERR-TOO-MANY-STAKERS (err u7))
(define-constant ERR-BELOW-MINIMUM (err u8))
(define-constant ERR-UNKNOWN-CYCLE (err u9))
(define-constant ERR-BAD-PARAMETER (err u10))
(define-constant ERR-ALREADY-COMMITTED (err u11))
(define-constant ERR-NO-AUDIT (err u12))
(define-constant ERR-LATE-AUDIT (err u13))
(define-constant ERR-NOTHING-TO-PUNISH (err u14))

(define-data-var cycle-length uint u100)
(define-data-var min-stake uint u1)
(define-data-var stakers (list 100 principal) (list))
(define-data-var leaders (list 5 principal) (list))
;; The staker being removed, for the filter in `unstake` (Clarity has no closures).
(define-data-var removing principal CONSENSUS)
;; The audited inference and its revealer, for the fold in `slash-verifiers`.
(define-data-var audit-key (buff 32) 0x)
(define-data-var audit-revealer principal CONSENSUS)

(define-map stakes principal {amount: uint, since: uint, unlock-cycle: uint})
(define-map verifier-sets uint (list 5 principal))
;; Audit commitment -> burn-block-height when it was made.
(define-map audit-commits (buff 32) uint)
;; What a verifier lost to an audited inference (its txid): once per verifier and
;; inference, however many commitments name it.
(define-map audit-slashes {verifier: principal, inference: (buff 32)} uint)
;; Verifiers an audit caught -> the ledger height of the slash: never in a set again.
(define-map barred principal uint)

;; --- read-only ---

(define-read-only (current-cycle)
  (/ burn-block-height (var-get cycle-length)))

(define-read-only (get-cycle-length)
  (var-get cycle-length))

(define-read-only (get-stake (who principal))
  (map-get? stakes who))

(define-read-only (get-leaders)
  (var-get leaders))

;; The verifier set of `cycle`, as recorded when it began.
(define-read-only (get-verifier-set (cycle uint))
  (ok (unwrap! (map-get? verifier-sets cycle) ERR-UNKNOWN-CYCLE)))

(define-read-only (is-verifier (who principal) (cycle uint))
  (is-some (index-of? (default-to (list) (map-get? verifier-sets cycle)) who)))

;; When an audit commitment was made (burn-block-height), if it was.
(define-read-only (get-audit-commit (commitment (buff 32)))
  (map-get? audit-commits commitment))

;; Since when (ledger height) `who` is barred from the verifier sets, if it is.
(define-read-only (get-barred (who principal))
  (map-get? barred who))

;; What `verifier` lost to the audited inference `txid`, if anything.
(define-read-only (get-audit-slash (verifier principal) (txid (buff 32)))
  (map-get? audit-slashes {verifier: verifier, inference: txid}))

;; --- ranking ---

(define-private (amount-of (who principal))
  (default-to u0 (get amount (map-get? stakes who))))

(define-private (since-of (who principal))
  (default-to u0 (get since (map-get? stakes who))))

(define-private (hash-of (who principal))
  (match (principal-destruct? who)
    ok-parts (get hash-bytes ok-parts)
    err-parts (get hash-bytes err-parts)))

;; Whether `a` ranks before `b`.
(define-private (ranks-before (a principal) (b principal))
  (let ((amount-a (amount-of a)) (amount-b (amount-of b)))
    (if (is-eq amount-a amount-b)
        (if (is-eq (since-of a) (since-of b))
            (< (hash-of a) (hash-of b))
            (< (since-of a) (since-of b)))
        (> amount-a amount-b))))

(define-private (insert-step
    (q principal)
    (state {p: principal, out: (list 6 principal), placed: bool}))
  (let ((p (get p state)) (out (get out state)))
    (if (and (not (get placed state)) (ranks-before p q))
        {p: p,
         out: (unwrap-panic (as-max-len?
                (append (unwrap-panic (as-max-len? (append out p) u6)) q) u6)),
         placed: true}
        {p: p,
         out: (default-to out (as-max-len? (append out q) u6)),
         placed: (get placed state)})))

;; `ranked` (sorted, at most five) with `p` inserted in its place, cut to five; a
;; barred `p` is left out.
(define-private (insert-ranked (p principal) (ranked (list 5 principal)))
  (if (is-some (map-get? barred p))
      ranked
      (insert-eligible p ranked)))

(define-private (insert-eligible (p principal) (ranked (list 5 principal)))
  (let ((state (fold insert-step ranked {p: p, out: (list), placed: false}))
        (out (if (get placed state)
                 (get out state)
                 (default-to (get out state) (as-max-len? (append (get out state) p) u6)))))
    (default-to (list) (as-max-len? (default-to (list) (slice? out u0 (min-len (len out)))) u5))))

(define-private (min-len (n uint))
  (if (< n SET-SIZE) n SET-SIZE))

(define-private (recompute-leaders)
  (var-set leaders (fold insert-ranked (var-get stakers) (list))))

(define-private (is-not-removed (who principal))
  (not (is-eq who (var-get removing))))

;; The leaders without `who`.
(define-private (leaders-without (who principal))
  (begin
    (var-set removing who)
    (let ((rest (filter is-not-removed (var-get leaders))))
      (var-set removing CONSENSUS)
      rest)))

;; Whether `who` is barred and could unstake: its lock is over and it is in the verifier
;; set of neither this cycle nor the last (its votes can no longer be audited). It will
;; never verify again, so its slot goes before anyone's when every slot is taken.
(define-private (evictable-barred (who principal))
  (let ((cycle (current-cycle)))
    (and (is-some (map-get? barred who))
         (>= cycle (default-to u0 (get unlock-cycle (map-get? stakes who))))
         (not (is-verifier who cycle))
         (or (is-eq cycle u0) (not (is-verifier who (- cycle u1)))))))

;; The staker whose slot goes first among `stakers` (CONSENSUS when there is none): a
;; barred one out of the recent sets, else the one that ranks last.
(define-private (lower-step (q principal) (lowest principal))
  (if (evictable-barred lowest)
      lowest
      (if (evictable-barred q)
          q
          (if (ranks-before lowest q) q lowest))))

(define-private (lowest-staker)
  (let ((all (var-get stakers)))
    (fold lower-step all (default-to CONSENSUS (element-at? all u0)))))

;; With every slot taken, a newcomer staking `amount` takes the slot of a barred staker
;; that could unstake whatever it stakes, else that of the staker that ranks last
;; when `amount` is larger than its stake (a tie keeps the incumbent); the evicted
;; staker gets its stake back at once, lock or not: a hundred minimum stakes, or barred
;; ones, cannot lock everyone else out. Returns the staker evicted.
(define-private (evict-lowest-for (amount uint))
  (let ((lowest (lowest-staker))
        (s (unwrap! (map-get? stakes lowest) ERR-TOO-MANY-STAKERS)))
    (asserts! (or (evictable-barred lowest) (> amount (get amount s))) ERR-TOO-MANY-STAKERS)
    (try! (as-contract (stx-transfer? (get amount s) tx-sender lowest)))
    (map-delete stakes lowest)
    (var-set removing lowest)
    (var-set stakers (filter is-not-removed (var-get stakers)))
    (var-set removing CONSENSUS)
    (if (is-some (index-of? (var-get leaders) lowest)) (recompute-leaders) true)
    (ok lowest)))

;; --- public ---

;; Stakes `amount` more micro-FAI, locked for `cycles` whole cycles after this one.
(define-public (stake (amount uint) (cycles uint))
  (let ((who tx-sender)
        (existing (map-get? stakes tx-sender))
        (unlock (+ (current-cycle) u1 cycles)))
    (asserts! (> amount u0) ERR-ZERO-AMOUNT)
    (asserts! (and (>= cycles u1) (<= cycles MAX-LOCK-CYCLES)) ERR-BAD-CYCLES)
    (asserts! (>= (+ amount (amount-of who)) (var-get min-stake)) ERR-BELOW-MINIMUM)
    (try! (if (or (is-some existing) (< (len (var-get stakers)) MAX-STAKERS))
              (ok CONSENSUS)
              (evict-lowest-for amount)))
    (unwrap! (stx-transfer? amount who (as-contract tx-sender)) ERR-INSUFFICIENT-FUNDS)
    (match existing
      s (map-set stakes who {amount: (+ amount (get amount s)),
                             since: (get since s),
                             unlock-cycle: (if (> unlock (get unlock-cycle s)) unlock (get unlock-cycle s))})
      (begin
        (map-set stakes who {amount: amount, since: burn-block-height, unlock-cycle: unlock})
        (var-set stakers (unwrap-panic (as-max-len? (append (var-get stakers) who) u100)))))
    ;; A stake only grows: its owner moves up among the leaders or enters them.
    (var-set leaders (insert-ranked who (leaders-without who)))
    (ok (get-stake who))))

;; Withdraws the whole stake once its lock has ended, and not while its owner is in the
;; verifier set of this cycle or the last (its votes may still be audited).
(define-public (unstake)
  (let ((who tx-sender)
        (s (unwrap! (map-get? stakes tx-sender) ERR-NO-STAKE))
        (cycle (current-cycle)))
    (asserts! (>= cycle (get unlock-cycle s)) ERR-LOCKED)
    (asserts! (not (is-verifier who cycle)) ERR-LOCKED)
    (asserts! (or (is-eq cycle u0) (not (is-verifier who (- cycle u1)))) ERR-LOCKED)
    (try! (as-contract (stx-transfer? (get amount s) tx-sender who)))
    (map-delete stakes who)
    (var-set removing who)
    (var-set stakers (filter is-not-removed (var-get stakers)))
    (var-set removing CONSENSUS)
    ;; A leader leaving lets the best of the others in: rank everyone again.
    (if (is-some (index-of? (var-get leaders) who)) (recompute-leaders) true)
    (ok (get amount s))))

;; Commits to an audit: sha256d(salt || txid || revealer) of a forgery to be served later. The first
;; commitment of a value counts.
(define-public (commit-audit (commitment (buff 32)))
  (begin
    (asserts! (map-insert audit-commits commitment burn-block-height) ERR-ALREADY-COMMITTED)
    (ok burn-block-height)))

;; --- consensus only ---

;; Records the leaders as the verifier set of `cycle` (once per cycle). The consensus
;; names the cycle of the block's own ledger anchor (burn-block-height here is the
;; parent's).
(define-public (begin-cycle (cycle uint))
  (begin
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (ok (map-insert verifier-sets cycle (var-get leaders)))))

;; Sets the cycle length and the minimum stake (at genesis).
(define-public (configure (length uint) (minimum uint))
  (begin
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (asserts! (and (> length u0) (> minimum u0)) ERR-BAD-PARAMETER)
    (var-set cycle-length length)
    (var-set min-stake minimum)
    (ok true)))

;; Cuts a tenth of `who`'s stake for the audited inference (once per inference): half to
;; the revealer, half burnt. Adds the cut to `total`.
(define-private (slash-one (who principal) (total uint))
  (match (map-get? stakes who)
    s (let ((cut (/ (get amount s) u10))
            (reward (/ cut u2))
            (key {verifier: who, inference: (var-get audit-key)}))
        (if (and (> cut u0) (map-insert audit-slashes key cut))
            (begin
              (if (> reward u0)
                  (unwrap-panic (as-contract (stx-transfer? reward tx-sender (var-get audit-revealer))))
                  true)
              (if (> (- cut reward) u0)
                  (unwrap-panic (as-contract (stx-burn? (- cut reward) tx-sender)))
                  true)
              (map-set stakes who (merge s {amount: (- (get amount s) cut)}))
              (map-set barred who burn-block-height)
              (+ total cut))
            total))
    total))

;; The verifiers `offenders` accepted the forgery `inference` (its txid) that the audit
;; `audit` revealed (the consensus checked the reveal, the votes and that more than half
;; the verifier set rejected it grossly) in a block anchored at ledger height
;; `audited-height`. The commitment must have been made no later than that block (its
;; burn-block-height is its parent's anchor height, below the audited block's, so a
;; commitment in the audited block itself counts: no vote on it exists yet). Returns
;; what was cut in all.
(define-public (slash-verifiers
    (audit (buff 32))
    (inference (buff 32))
    (audited-height uint)
    (revealer principal)
    (offenders (list 5 principal)))
  (let ((committed (unwrap! (map-get? audit-commits audit) ERR-NO-AUDIT)))
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (asserts! (< committed audited-height) ERR-LATE-AUDIT)
    (asserts! (> (len offenders) u0) ERR-NOTHING-TO-PUNISH)
    (var-set audit-key inference)
    (var-set audit-revealer revealer)
    (let ((total (fold slash-one offenders u0)))
      (var-set audit-revealer CONSENSUS)
      ;; The barred leave the leaders; the best of the others take their places.
      (recompute-leaders)
      (ok total))))
