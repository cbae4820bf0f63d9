//! RFC 9381 appendix B.3 (ECVRF-EDWARDS25519-SHA512-TAI, examples 16 to 18), and
//! tampering: a changed proof, key or message never verifies.

use fai_vrf::{proof_to_hash, verify, Proof, PublicKey, SecretKey, VrfError, PROOF_LEN};
use proptest::prelude::*;

struct Vector {
    sk: &'static str,
    pk: &'static str,
    alpha: &'static str,
    pi: &'static str,
    beta: &'static str,
}

const VECTORS: [Vector; 3] = [
    Vector {
        sk: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        pk: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        alpha: "",
        pi: "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab1268a1b0db10836d9826a528ca76567805",
        beta: "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
    },
    Vector {
        sk: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        pk: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        alpha: "72",
        pi: "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed5933bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926da3ef39226bbc355bdc9850112c8f4b02",
        beta: "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
    },
    Vector {
        sk: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        pk: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        alpha: "af82",
        pi: "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf8096bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a2d41b00b05081ed0f58ee5e31b3a970e",
        beta: "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c452118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
    },
];

fn bytes<const N: usize>(h: &str) -> [u8; N] {
    hex::decode(h).unwrap().try_into().unwrap()
}

#[test]
fn the_rfc_vectors_prove_verify_and_hash() {
    for v in &VECTORS {
        let key = SecretKey::from_seed(bytes(v.sk));
        assert_eq!(key.public(), PublicKey(bytes(v.pk)));
        let alpha = hex::decode(v.alpha).unwrap();
        let pi = key.prove(&alpha).unwrap();
        assert_eq!(hex::encode(pi.0), v.pi);
        let beta = verify(&key.public(), &pi, &alpha).unwrap();
        assert_eq!(hex::encode(beta.0), v.beta);
        assert_eq!(proof_to_hash(&pi).unwrap(), beta);
    }
}

#[test]
fn a_key_of_small_order_or_off_the_curve_is_refused() {
    let v = &VECTORS[0];
    let pi = Proof(bytes(v.pi));
    // The identity point encodes as 1 followed by zeros.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        verify(&PublicKey(identity), &pi, b""),
        Err(VrfError::WeakPublicKey)
    );
    // y = 2 is not the y of any point of edwards25519.
    let mut off = [0u8; 32];
    off[0] = 2;
    assert_eq!(
        verify(&PublicKey(off), &pi, b""),
        Err(VrfError::BadPublicKey)
    );
    // An s that is not reduced modulo the group order.
    let mut unreduced = pi.0;
    unreduced[PROOF_LEN - 1] = 0xff;
    assert_eq!(
        verify(&PublicKey(bytes(v.pk)), &Proof(unreduced), b""),
        Err(VrfError::MalformedProof)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn tampering_with_proof_key_or_message_fails(
        seed in any::<[u8; 32]>(),
        alpha in proptest::collection::vec(any::<u8>(), 0..64),
        flip in 0usize..PROOF_LEN * 8,
        other_seed in any::<[u8; 32]>(),
    ) {
        let key = SecretKey::from_seed(seed);
        let pi = key.prove(&alpha).unwrap();
        prop_assert!(verify(&key.public(), &pi, &alpha).is_ok());
        let mut bad = pi;
        bad.0[flip / 8] ^= 1 << (flip % 8);
        prop_assert!(verify(&key.public(), &bad, &alpha).is_err());
        let mut other_alpha = alpha.clone();
        other_alpha.push(0);
        prop_assert!(verify(&key.public(), &pi, &other_alpha).is_err());
        prop_assume!(other_seed != seed);
        let other = SecretKey::from_seed(other_seed);
        prop_assert!(verify(&other.public(), &pi, &alpha).is_err());
    }
}
