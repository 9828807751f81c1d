"""Software protections: block-wise ABFT, range protection, float ABFT, and the policy that combines them."""
