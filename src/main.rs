mod proto {
    tonic::include_proto!("authz.v1");
}
fn main() {}
