//! A Merkle tree over the events one checkpoint covers, so that anyone holding one event (a
//! payee its own lines) can prove it is in a signed checkpoint without seeing any other event.
//!
//! The tree is RFC 6962's (§2.1, as in Certificate Transparency), over the events of the range
//! `(previous checkpoint's position, checkpoint's position]` in global order:
//!
//! ```text
//! leaf(e)   = SHA-256( 0x00 ‖ "payledger-leaf-v1" \n position \n stream_id \n stream_version \n hex(hash) )
//! node(l,r) = SHA-256( 0x01 ‖ l ‖ r )
//! MTH(D[n]) = node( MTH(D[0:k]), MTH(D[k:n]) ), k the largest power of two below n; MTH({d}) = leaf
//! ```
//!
//! (UTF-8, decimal numbers, lowercase hex, no trailing newline.) An inclusion proof is the audit
//! path of RFC 6962 §2.1.1, checked with RFC 9162 §2.1.3.2; `docs/auditing.md` repeats it with a
//! worked example and `docs/auditing/verify_proof.py` checks one.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;

pub const LEAF_VERSION_LINE: &str = "payledger-leaf-v1";

/// The leaf hash of the event at `global_position`.
pub fn leaf_hash(
    global_position: i64,
    stream_id: &str,
    stream_version: i64,
    hash: &[u8; 32],
) -> [u8; 32] {
    let mut data = String::with_capacity(120 + stream_id.len());
    data.push_str(LEAF_VERSION_LINE);
    let _ = write!(data, "\n{global_position}\n{stream_id}\n{stream_version}\n");
    data.push_str(&hex::encode(hash));
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data.as_bytes());
    hasher.finalize().into()
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root of leaves given one at a time, in `O(log n)` memory: what sealing uses, since a
/// checkpoint may cover millions of events.
#[derive(Debug, Default, Clone)]
pub struct RootBuilder {
    /// Roots of complete subtrees, left to right, with their heights (strictly decreasing).
    stack: Vec<(u32, [u8; 32])>,
    leaves: u64,
}

impl RootBuilder {
    pub fn push(&mut self, leaf: [u8; 32]) {
        self.leaves += 1;
        let mut current = (0u32, leaf);
        while let Some(&(height, left)) = self.stack.last() {
            if height != current.0 {
                break;
            }
            self.stack.pop();
            current = (height + 1, node(&left, &current.1));
        }
        self.stack.push(current);
    }

    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// The tree's root; `None` for no leaves. Joining the complete subtrees right to left is
    /// RFC 6962's split: each left subtree is the largest power of two.
    pub fn root(&self) -> Option<[u8; 32]> {
        let mut iter = self.stack.iter().rev();
        let mut root = iter.next()?.1;
        for (_, left) in iter {
            root = node(left, &root);
        }
        Some(root)
    }
}

/// The root of `leaves` (non-empty).
pub fn root(leaves: &[[u8; 32]]) -> Option<[u8; 32]> {
    match leaves.len() {
        0 => None,
        1 => Some(leaves[0]),
        n => {
            let k = split(n);
            Some(node(&root(&leaves[..k])?, &root(&leaves[k..])?))
        }
    }
}

/// The audit path of the leaf at `index` (RFC 6962 §2.1.1), the sibling nearest the leaf first.
pub fn audit_path(leaves: &[[u8; 32]], index: usize) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    let (mut path, sibling) = if index < k {
        (audit_path(&leaves[..k], index), root(&leaves[k..]))
    } else {
        (audit_path(&leaves[k..], index - k), root(&leaves[..k]))
    };
    path.extend(sibling);
    path
}

/// The root that `leaf` at `index` of a tree of `size` leaves and its audit `path` lead to
/// (RFC 9162 §2.1.3.2); `None` when the path does not fit the index and size.
pub fn root_from_path(
    index: u64,
    size: u64,
    leaf: [u8; 32],
    path: &[[u8; 32]],
) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (1..=n as i64)
            .map(|p| leaf_hash(p, &format!("order-{p}"), 1, &[p as u8; 32]))
            .collect()
    }

    #[test]
    fn the_streaming_root_is_the_recursive_root_and_every_path_proves_its_leaf() {
        for n in 1..=33 {
            let leaves = leaves(n);
            let mut builder = RootBuilder::default();
            for leaf in &leaves {
                builder.push(*leaf);
            }
            let expected = root(&leaves).unwrap();
            assert_eq!(builder.root(), Some(expected), "n = {n}");
            for (index, leaf) in leaves.iter().enumerate() {
                let path = audit_path(&leaves, index);
                assert_eq!(
                    root_from_path(index as u64, n as u64, *leaf, &path),
                    Some(expected),
                    "n = {n}, index = {index}"
                );
                // Another leaf or index does not lead to the root. (A neighbouring size may: the
                // walk depends on the tree's shape along the path only; the leaf names its own
                // position, and the checkpoint its range.)
                let other = leaf_hash(999, "order-x", 1, &[0; 32]);
                assert_ne!(
                    root_from_path(index as u64, n as u64, other, &path),
                    Some(expected)
                );
                if n > 1 {
                    let moved = (index + 1) % n;
                    assert_ne!(
                        root_from_path(moved as u64, n as u64, *leaf, &path),
                        Some(expected),
                        "n = {n}, index = {index} moved to {moved}"
                    );
                }
            }
        }
        assert_eq!(RootBuilder::default().root(), None);
    }

    #[test]
    fn the_worked_example_of_the_docs_is_stable() {
        // docs/auditing.md, "Inclusion proofs": three events, derived again there by
        // verify_proof.py (which shares no code with this).
        let hash =
            |hex_text: &str| -> [u8; 32] { hex::decode(hex_text).unwrap().try_into().unwrap() };
        let a = leaf_hash(
            1,
            "order-order-0001",
            1,
            &hash("7fcfc4d1093406e2fe541ddb7f2ce70ac1cf0b77bc55480c7a3fd2e5e8c5b405"),
        );
        let b = leaf_hash(2, "order-order-0002", 1, &[0xab; 32]);
        let c = leaf_hash(3, "order-order-0001", 2, &[0xcd; 32]);
        assert_eq!(
            hex::encode(a),
            "921c50e9e4bc4fa6258d6703f47650700224af9864f8f2acb0e2963129ac80e5"
        );
        assert_eq!(
            hex::encode(c),
            "12580615f9df86ba2464e231b1836165e8eac617a925c96176bbe532a382609e"
        );
        let path = audit_path(&[a, b, c], 2);
        assert_eq!(
            path.iter().map(hex::encode).collect::<Vec<_>>(),
            vec!["a59c90338019bf6e5948feaf9afed42e5318caa83137d45e79ec90534ca717b4"]
        );
        assert_eq!(
            root_from_path(2, 3, c, &path).map(hex::encode).as_deref(),
            Some("401a3b477075c126e9a3aa8742dd856d67e6c968970e4e186763a6cdcb1b3d8b")
        );
    }

    #[test]
    fn the_recipe_is_rfc_6962_s() {
        // Three leaves: node(node(a, b), c), with the leaf and node prefixes of RFC 6962.
        let l = leaves(3);
        let expected = node(&node(&l[0], &l[1]), &l[2]);
        assert_eq!(root(&l), Some(expected));
        let mut data = vec![0u8];
        data.extend_from_slice(
            format!("payledger-leaf-v1\n1\norder-1\n1\n{}", "01".repeat(32)).as_bytes(),
        );
        assert_eq!(l[0], <[u8; 32]>::from(Sha256::digest(&data)));
        assert_eq!(audit_path(&l, 2), vec![node(&l[0], &l[1])]);
        assert_eq!(audit_path(&l, 0), vec![l[1], l[2]]);
    }
}
