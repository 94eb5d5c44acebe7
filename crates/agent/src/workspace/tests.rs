use super::*;

#[test]
fn branch_names_are_slugged_and_bounded() {
    assert_eq!(
        issue_branch_name(5, "Workspaces: cached mirrors, a worktree per job!"),
        "kodiai/issue-5-workspaces-cached-mirrors-a-worktree-per"
    );
    assert_eq!(pull_request_branch_name(9, "¡¿ ?!"), "kodiai/pr-9-change");
    assert_eq!(
        issue_branch_name(1, &"x".repeat(60)).len(),
        "kodiai/issue-1-".len() + 40
    );
}

#[test]
fn job_ids_are_checked() {
    assert!(validate_job("0190f3a2-7c1e-7d30-9b55-2f9c1d3c2a11").is_ok());
    for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
        assert!(validate_job(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn mirror_names_differ_for_keys_that_read_alike() {
    let a = mirror_name("github.com/a/b_c");
    let b = mirror_name("github.com/a_b/c");
    assert_ne!(a, b);
    assert!(a.starts_with("github.com_a_b_c-"));
}
