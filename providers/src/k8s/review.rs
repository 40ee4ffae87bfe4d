//! Reviews: questions the API server answers without storing anything.
//! A TokenReview (whom a token authenticates as), a SubjectAccessReview
//! (what a user may do) and a SelfSubjectAccessReview (what these
//! credentials may do). `mesh check` and preflight ask them; a review
//! never changes a cluster.

use crate::cluster::{ClusterError, Connection};
use crate::rendered::Sensitive;

/// A TokenReview on `conn`: the user `token` authenticates as, or why not.
pub async fn token(
    conn: &Connection,
    token: &Sensitive,
) -> Result<Result<String, String>, ClusterError> {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    let api: kube::Api<TokenReview> = kube::Api::all(conn.client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.expose().to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    let pp = kube::api::PostParams::default();
    let answer = conn
        .call("reviewing the remote secret's token", || {
            api.create(&pp, &review)
        })
        .await?;
    let status = answer.status.unwrap_or_default();
    Ok(match (status.authenticated, status.user) {
        (Some(true), Some(user)) => Ok(user.username.unwrap_or_default()),
        _ => Err(status
            .error
            .filter(|e| !e.is_empty())
            .map_or("not authenticated".into(), |e| crate::rendered::shown(&e))),
    })
}

/// A SubjectAccessReview on `conn`: may the ServiceAccount `user` do
/// `verb` on `resource` in every namespace?
pub async fn access(
    conn: &Connection,
    user: &str,
    sa_namespace: &str,
    verb: &str,
    group: &str,
    resource: &str,
) -> Result<bool, ClusterError> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(conn.client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{sa_namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let pp = kube::api::PostParams::default();
    let answer = conn
        .call(&format!("reviewing access to {verb} {resource}"), || {
            api.create(&pp, &review)
        })
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// A SelfSubjectAccessReview on `conn`: may these credentials do `verb` on
/// `resource` of `group`, in `namespace` (None: cluster-wide)?
pub async fn can_i(
    conn: &Connection,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> Result<bool, kube::Error> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let api: kube::Api<SelfSubjectAccessReview> = kube::Api::all(conn.client.clone());
    // `pods/log`: resource `pods`, subresource `log`, as RBAC names it.
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: namespace.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let pp = kube::api::PostParams::default();
    let answer = crate::cluster::with_retries(|| api.create(&pp, &review)).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
